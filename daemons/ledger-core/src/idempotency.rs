//! The idempotency keys in memory: an open-addressing table indexed by the
//! keys' own bits.
//!
//! Why not a `HashMap`: a new key (most requests) cost hashbrown two cache
//! misses in a table of a million keys, one in its control bytes to find
//! the key absent and one in its separate bucket array to insert it, and the
//! bucket's address cannot be known ahead. Here a key and its entry share a
//! slot whose address follows from the key alone, so a batch can pull its
//! slots toward the cache before it applies (`Ledger::apply_all`) and the
//! lookup and the insert then touch the same line.
//!
//! The keys are blake3 digests, so their bits are already uniform: no hash
//! function is needed, and nobody can aim keys at one region of the table.
//! Keys are never removed, so linear probing needs no tombstones.
//!
//! What a key records is a product's business: a [`Recorded`] kind the
//! product declared and the id of what the first request made.

use serde::{Deserialize, Serialize};

/// A 128-bit digest of an idempotency key (the product's kind of request,
/// its owner, the key's text) or of a request's fields.
pub type Digest = [u8; 16];

/// What a key's first request made: a kind its product declared (never
/// zero: a zero kind marks a free slot) and the id of the thing made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Recorded {
    pub kind: u8,
    pub id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    /// The first request's fields, to tell a replay (the same fields) from a
    /// reuse of the key for something else.
    pub fingerprint: Digest,
    pub recorded: Recorded,
}

/// Each part behind its length, so that no two lists of parts give the same
/// input, hashed in one call: the inputs are short (one blake3 block for most
/// keys), and a streamed hasher per part cost more than the hashing. Longer
/// inputs take a vector; a bigger stack buffer costs its zeroing every call.
/// Always inlined, as are its callers: the parts' sizes are then known (all
/// but a key's text are fixed), and the framing is a few moves instead of a
/// loop of `memcpy` calls of unknown lengths, a fifth of a wallet transfer's
/// instructions.
#[inline(always)]
fn framed(parts: &[&[u8]], hash: impl FnOnce(&[u8]) -> Digest) -> Digest {
    let framed_len: usize = parts.iter().map(|part| 8 + part.len()).sum();
    let mut stack = [0u8; 160];
    let mut heap = Vec::new();
    let input = if framed_len <= stack.len() {
        &mut stack[..framed_len]
    } else {
        heap.resize(framed_len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for part in parts {
        input[at..at + 8].copy_from_slice(&(part.len() as u64).to_le_bytes());
        input[at + 8..at + 8 + part.len()].copy_from_slice(part);
        at += 8 + part.len();
    }
    hash(input)
}

/// An idempotency key's digest: blake3, because it is what tells one
/// owner's keys from another's, and nobody may craft a key that lands on
/// someone else's.
#[inline(always)]
pub fn key_digest(parts: &[&[u8]]) -> Digest {
    framed(parts, |input| {
        let mut out = [0; 16];
        out.copy_from_slice(&blake3::hash(input).as_bytes()[..16]);
        out
    })
}

/// A request's fingerprint, stored with its idempotency key to tell a
/// replay (the same fields) from a reuse (DUPLICATE). XXH3-128, not blake3:
/// it only ever compares two requests of one owner under one key, so the
/// only collision anyone could craft would fool its own author, and a chance
/// one is 2^-128. At a tenth of blake3's cost for these short inputs, this
/// was the largest single saving per transfer in `scripts/bench ledger`.
#[inline(always)]
pub fn fingerprint(parts: &[&[u8]]) -> Digest {
    framed(parts, |input| xxhash_rust::xxh3::xxh3_128(input).to_le_bytes())
}

/// A key and its entry in six words: the key (0 and 1), the fingerprint (2
/// and 3), the recorded id (4) and what it records (5), where 0 is a free
/// slot. All zeros is free so that a new table is zeroed memory: the
/// allocator maps it untouched and a page costs nothing until a key lands
/// in it, as the reserved room of a fresh ledger mostly does not.
type Slot = [u64; 6];

fn words(bytes: &Digest) -> [u64; 2] {
    let (low, high) = bytes.split_at(8);
    [u64::from_le_bytes(low.try_into().expect("8 bytes")), u64::from_le_bytes(high.try_into().expect("8 bytes"))]
}

fn bytes(words: &[u64]) -> Digest {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&words[0].to_le_bytes());
    bytes[8..].copy_from_slice(&words[1].to_le_bytes());
    bytes
}

/// A kind of 0 would read as a free slot: the kernel refuses to record one.
fn encode(key: &Digest, entry: &IdempotencyEntry) -> Slot {
    debug_assert_ne!(entry.recorded.kind, 0, "kind 0 marks a free slot");
    let [key_low, key_high] = words(key);
    let [fingerprint_low, fingerprint_high] = words(&entry.fingerprint);
    [key_low, key_high, fingerprint_low, fingerprint_high, entry.recorded.id, entry.recorded.kind as u64]
}

fn decode(slot: &Slot) -> Option<IdempotencyEntry> {
    let kind = u8::try_from(slot[5]).ok().filter(|kind| *kind != 0)?;
    Some(IdempotencyEntry { fingerprint: bytes(&slot[2..4]), recorded: Recorded { kind, id: slot[4] } })
}

fn is_free(slot: &Slot) -> bool {
    slot[5] == 0
}

pub struct IdempotencyTable {
    /// A power of two long, at most half full: linear probing's expected
    /// probes for an absent key stay under three.
    slots: Vec<Slot>,
    /// The occupied slots in the order their keys came: listing the keys
    /// (the state hash, a restore's copy) then takes time for the keys, not
    /// for the whole table of mostly untouched memory.
    occupied: Vec<usize>,
    /// Set by `touch_pages`: the slots are asked to be backed by huge pages,
    /// and so are those a growth makes.
    huge_pages: bool,
}

const SLOTS_MIN: usize = 16;

impl IdempotencyTable {
    /// Room for `keys` keys before the table grows.
    pub fn with_capacity(keys: usize) -> Self {
        IdempotencyTable { slots: free_slots(keys.saturating_mul(2).max(SLOTS_MIN).next_power_of_two()), occupied: Vec::with_capacity(keys), huge_pages: false }
    }

    pub fn len(&self) -> usize {
        self.occupied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.occupied.is_empty()
    }

    fn home(&self, key: &[u64; 2]) -> usize {
        key[0] as usize & (self.slots.len() - 1)
    }

    /// The slot holding `key`, or the free one where it would go.
    fn find(&self, key: &[u64; 2]) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        loop {
            let slot = &self.slots[at];
            if is_free(slot) || slot[..2] == key[..] {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    pub fn get(&self, key: &Digest) -> Option<IdempotencyEntry> {
        decode(&self.slots[self.find(&words(key))])
    }

    /// Inserts or replaces; returns the entry replaced.
    pub fn insert(&mut self, key: Digest, entry: IdempotencyEntry) -> Option<IdempotencyEntry> {
        if (self.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let at = self.find(&words(&key));
        let replaced = decode(&self.slots[at]);
        self.slots[at] = encode(&key, &entry);
        if replaced.is_none() {
            self.occupied.push(at);
        }
        replaced
    }

    /// Twice the slots, every key moved: a pause proportional to the table,
    /// which `LedgerLimits::idempotency_keys_reserved` exists to avoid.
    fn grow(&mut self) {
        let doubled = free_slots(self.slots.len() * 2);
        if self.huge_pages {
            // Before the moves below map its pages in.
            advise_huge_pages(&doubled);
        }
        let old = std::mem::replace(&mut self.slots, doubled);
        let mut occupied = std::mem::take(&mut self.occupied);
        for moved in &mut occupied {
            let slot = old[*moved];
            let at = self.find(&[slot[0], slot[1]]);
            self.slots[at] = slot;
            *moved = at;
        }
        self.occupied = occupied;
    }

    /// Asks the CPU to load `key`'s home slot into its cache, without
    /// waiting: a hint, which changes nothing and cannot fault.
    pub fn prefetch(&self, key: &Digest) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let slot = &self.slots[self.home(&words(key))];
            // SAFETY: a prefetch reads nothing the program sees and cannot
            // fault; both addresses are inside the slot.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(slot.as_ptr().cast());
                // A 48-byte slot can end on the next cache line.
                _mm_prefetch::<_MM_HINT_T0>(slot[5..].as_ptr().cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Writes to every page of the slots, so that the kernel maps them now
    /// rather than one by one as keys first land in each: a fault apiece,
    /// microseconds each, in the middle of a batch (the core's p99 in
    /// `scripts/bench ledger`). Changes no slot. Returns the bytes mapped.
    ///
    /// First asks for huge pages, for this table and any it grows into:
    /// with 4 KiB pages a million-key table spans 24,576 of them, more than
    /// the TLB holds, so nearly every lookup missed it.
    pub fn touch_pages(&mut self) -> usize {
        self.huge_pages = true;
        advise_huge_pages(&self.slots);
        // Fewer slots than fit in a 4 KiB page apart: no page is skipped.
        const STRIDE_SLOTS: usize = 4096 / std::mem::size_of::<Slot>();
        for slot in self.slots.iter_mut().step_by(STRIDE_SLOTS) {
            // Opaque to the optimizer, so the store of the same value stays.
            slot[5] = std::hint::black_box(slot[5]);
        }
        std::mem::size_of_val(self.slots.as_slice())
    }

    /// Every key and entry, in the order they were first inserted.
    pub fn iter(&self) -> impl Iterator<Item = (Digest, IdempotencyEntry)> + '_ {
        self.occupied.iter().map(|&at| {
            let slot = &self.slots[at];
            (bytes(&slot[..2]), decode(slot).expect("an occupied slot decodes"))
        })
    }
}

/// Zeroed memory: `vec!` of zeros asks the allocator for zeroed pages.
fn free_slots(count: usize) -> Vec<Slot> {
    vec![[0; 6]; count]
}

/// Asks Linux to back `slots` with 2 MiB pages where it can: transparent
/// huge pages in `madvise` mode (what `marionette-tune` sets) or `always`;
/// `never` ignores the advice. Only the whole 4 KiB pages inside the slots.
fn advise_huge_pages(slots: &[Slot]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE_BYTES: usize = 4096;
        let start = slots.as_ptr() as usize;
        let end = start + std::mem::size_of_val(slots);
        let (first, last) = (start.next_multiple_of(PAGE_BYTES), end & !(PAGE_BYTES - 1));
        if last > first {
            // SAFETY: advice on whole pages of the slots' own allocation,
            // which changes how the kernel backs them and never what they
            // hold. It is only advice: a refusal changes nothing either.
            unsafe { libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = slots;
}

impl Extend<(Digest, IdempotencyEntry)> for IdempotencyTable {
    fn extend<T: IntoIterator<Item = (Digest, IdempotencyEntry)>>(&mut self, entries: T) {
        for (key, entry) in entries {
            self.insert(key, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn entry(id: u64) -> IdempotencyEntry {
        IdempotencyEntry { fingerprint: [id as u8; 16], recorded: Recorded { kind: 2, id } }
    }

    /// Keys that share their home slot's bits (the low 8 bytes) collide in
    /// every table size, so probing, wrapping and growth all run.
    fn key(low: u8, high: u64) -> Digest {
        let mut key = [0; 16];
        key[0] = low;
        key[8..].copy_from_slice(&high.to_le_bytes());
        key
    }

    #[test]
    fn every_entry_survives_its_slot_encoding() {
        for recorded in [Recorded { kind: 1, id: 1 }, Recorded { kind: 2, id: u64::MAX }, Recorded { kind: 3, id: 0 }, Recorded { kind: u8::MAX, id: 7 }] {
            let entry = IdempotencyEntry { fingerprint: [0xa5; 16], recorded };
            let slot = encode(&[0; 16], &entry);
            assert!(!is_free(&slot), "{recorded:?} of an all-zero key is not a free slot");
            assert_eq!(decode(&slot), Some(entry));
        }
        assert_eq!(decode(&[0; 6]), None);
        assert!(std::mem::size_of::<Slot>() <= 64, "prefetch() asks for the two lines a slot can touch");
    }

    proptest! {
        /// The table answers as a HashMap does, through growth from the
        /// smallest size and through runs of colliding keys.
        #[test]
        fn the_table_answers_as_a_map_does(ops in proptest::collection::vec((any::<bool>(), 0u8..4, 0u64..300, any::<u64>()), 1..2_000)) {
            let mut table = IdempotencyTable::with_capacity(0);
            let mut model: HashMap<Digest, IdempotencyEntry> = HashMap::new();
            for (is_insert, low, high, id) in ops {
                // Low bytes near the end of a 16-slot table wrap around it.
                let key = key(low.wrapping_add(14), high);
                if is_insert {
                    prop_assert_eq!(table.insert(key, entry(id)), model.insert(key, entry(id)));
                } else {
                    prop_assert_eq!(table.get(&key), model.get(&key).copied());
                }
                table.prefetch(&key);
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.len() * 2 <= table.slots.len(), "at most half full");
                prop_assert_eq!(table.slots.iter().filter(|slot| !is_free(slot)).count(), table.len());
            }
            let mut listed: Vec<_> = table.iter().collect();
            let mut expected: Vec<_> = model.into_iter().collect();
            listed.sort_by_key(|(k, _)| *k);
            expected.sort_by_key(|(k, _)| *k);
            prop_assert_eq!(listed, expected);
        }
    }

    /// Stored idempotency records hold these digests: framing in one buffer
    /// must give exactly what streaming the framed parts gives, on both sides
    /// of the stack buffer.
    #[test]
    fn one_call_digests_equal_streamed_ones() {
        for key_bytes in [0, 1, 12, 36, 63, 64, 65, 119, 120, 121, 128, 300] {
            let key = "k".repeat(key_bytes);
            let parts: [&[u8]; 3] = [b"transfer", &7u64.to_le_bytes(), key.as_bytes()];
            let mut streamed = blake3::Hasher::new();
            let mut streamed_fingerprint = xxhash_rust::xxh3::Xxh3::new();
            for part in parts {
                streamed.update(&(part.len() as u64).to_le_bytes()).update(part);
                streamed_fingerprint.update(&(part.len() as u64).to_le_bytes());
                streamed_fingerprint.update(part);
            }
            assert_eq!(key_digest(&parts)[..], streamed.finalize().as_bytes()[..16], "key of {key_bytes} bytes");
            assert_eq!(fingerprint(&parts), streamed_fingerprint.digest128().to_le_bytes(), "key of {key_bytes} bytes");
            assert_ne!(key_digest(&parts), fingerprint(&parts));
        }
        assert_ne!(key_digest(&[b"ab", b"c"]), key_digest(&[b"a", b"bc"]), "the lengths keep the parts apart");
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]), "the lengths keep the parts apart");
    }

    #[test]
    fn a_key_of_all_zeros_is_a_key_like_any_other() {
        let mut table = IdempotencyTable::with_capacity(4);
        assert_eq!(table.get(&[0; 16]), None);
        assert_eq!(table.insert([0; 16], entry(7)), None);
        assert_eq!(table.get(&[0; 16]), Some(entry(7)));
        assert_eq!(table.get(&key(0, 1)), None, "a key probing past it is not it");
        assert_eq!(table.len(), 1);
    }

    /// The bytes of `slots`' whole pages that are resident, by mincore(2):
    /// exactly this range, whatever else the process maps, frees or merges
    /// beside it (the whole process's resident size moved with the other
    /// tests of this binary, and failed this test on a loaded machine).
    #[cfg(target_os = "linux")]
    fn resident_bytes(slots: &[Slot]) -> usize {
        const PAGE_BYTES: usize = 4096;
        let start = (slots.as_ptr() as usize).next_multiple_of(PAGE_BYTES);
        let end = (slots.as_ptr() as usize + std::mem::size_of_val(slots)) & !(PAGE_BYTES - 1);
        let mut pages = vec![0u8; (end - start) / PAGE_BYTES];
        // SAFETY: a query of whole pages inside one live allocation, writing
        // one byte per page into a vector of exactly that many bytes.
        let status = unsafe { libc::mincore(start as *mut libc::c_void, end - start, pages.as_mut_ptr()) };
        assert_eq!(status, 0, "mincore: {}", std::io::Error::last_os_error());
        pages.iter().filter(|page| *page & 1 == 1).count() * PAGE_BYTES
    }

    /// What `touch_pages` is for: the kernel maps the table in now (a fresh
    /// table is zeroed memory it has not mapped yet).
    #[cfg(target_os = "linux")]
    #[test]
    fn touching_the_pages_maps_them_in() {
        let mut table = IdempotencyTable::with_capacity(1 << 20);
        let before = resident_bytes(&table.slots);
        let bytes = table.touch_pages();
        let after = resident_bytes(&table.slots);
        assert_eq!(bytes, 96 << 20);
        assert!(before < bytes / 10, "{before} bytes of a fresh table were resident already: the test would prove nothing");
        assert!(after >= bytes - 2 * 4096, "{after} bytes resident after touching a table of {bytes}");
    }

    /// Keys spread over every home slot, as digests are.
    fn spread_key(i: u64) -> Digest {
        let mut key = [0; 16];
        // An odd multiplier is a bijection on every table size's home bits.
        key[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        key[8..].copy_from_slice(&i.to_le_bytes());
        key
    }

    /// Whether the mapping that holds `address` carries the kernel's huge
    /// page advice (`hg` in `/proc/self/smaps`' VmFlags). The advice splits
    /// the allocation's mapping at its first whole page: ask about an
    /// address inside the slots.
    #[cfg(target_os = "linux")]
    fn advised_huge_at(address: usize) -> bool {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ').filter(|(range, _)| range.contains('-') && !range.ends_with(':')) {
                let (start, end) = range.split_once('-').unwrap();
                let (start, end) = (usize::from_str_radix(start, 16).unwrap(), usize::from_str_radix(end, 16).unwrap());
                inside = (start..end).contains(&address);
            } else if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
                return flags.split_whitespace().any(|flag| flag == "hg");
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    /// A touched table asks Linux for huge pages, and so does the table it
    /// grows into; an untouched one does not. Asserted on the advice the
    /// kernel recorded, not on the huge pages it then found: whether it
    /// finds free 2 MiB pages depends on the host's mode and on how
    /// fragmented its memory is at that moment (the daemon logs what it got).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_touched_table_and_its_growth_ask_for_huge_pages() {
        // Tables above glibc's largest mmap threshold (32 MiB), as the
        // daemon's are: a smaller one may come from the heap, which the
        // advice would cover in part only.
        let mut table = IdempotencyTable::with_capacity(1 << 19);
        let middle = |table: &IdempotencyTable| table.slots.as_ptr() as usize + std::mem::size_of_val(table.slots.as_slice()) / 2;
        assert!(!advised_huge_at(middle(&table)), "a fresh table asks for nothing");
        table.touch_pages();
        assert!(advised_huge_at(middle(&table)), "a touched table asks for huge pages");
        let slots_bytes = std::mem::size_of_val(table.slots.as_slice());
        for i in 0..(1u64 << 19) + 1 {
            table.insert(spread_key(i), entry(i));
        }
        assert_eq!(std::mem::size_of_val(table.slots.as_slice()), 2 * slots_bytes, "the table grew");
        assert!(advised_huge_at(middle(&table)), "the table a touched one grows into asks for huge pages");
        let mut untouched = IdempotencyTable::with_capacity(1 << 19);
        for i in 0..(1u64 << 14) {
            untouched.insert(spread_key(i), entry(i));
        }
        assert!(!advised_huge_at(middle(&untouched)), "a table never touched asks for none");
    }

    #[test]
    fn reserved_room_is_not_regrown() {
        let mut table = IdempotencyTable::with_capacity(1_000);
        let slots = table.slots.len();
        for i in 0..1_000u64 {
            table.insert(key(i as u8, i), entry(i));
        }
        assert_eq!(table.slots.len(), slots, "1,000 keys fit in the room made for them");
        assert_eq!(table.len(), 1_000);
        assert_eq!(table.touch_pages(), slots * 48);
        assert!((0..1_000u64).all(|i| table.get(&key(i as u8, i)) == Some(entry(i))), "touching the pages changed no entry");
        assert_eq!(table.get(&key(0, 1_000)), None);
    }
}
