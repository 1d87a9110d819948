//! Reading a journal segment back: a pure function over its bytes.
//!
//! A record is `[length u32][crc32c u32][sequence u64][batch index u32][term u64][payload]`,
//! little endian, the checksum covering everything but itself. The batch
//! index is the record's place in the group commit that wrote it (0 for the
//! first), so a record names the first sequence of its batch. The term is
//! the Raft term of the leader that made the entry (0 where there is no
//! consensus: matching's journal), so that a replica knows the log id of
//! every entry it holds without decoding a payload.
//!
//! Where a record fails to parse, the rest of the segment decides what it is.
//! A batch is written only after the one before it was synced, so if a valid
//! record of a *later batch* follows, the damage is inside data that was
//! synced and acknowledged: corruption, which stops recovery. Otherwise the
//! damage is in the last batch written, which a crash may have cut short or
//! left with holes (the disk writes an unsynced batch's sectors in any
//! order): a torn tail, truncated. (Damage to the last batch after it was
//! synced is indistinguishable from a torn write; see ARCHITECTURE.md.)

pub const RECORD_HEADER_BYTES: usize = 28;
/// Refused on write and treated as damage on read.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Nothing valid after `offset`: cut the segment there.
    TornTail { offset: u64 },
    /// A bad record at `offset` with valid records after it.
    Corrupt { offset: u64, detail: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Where the last good record ends.
    pub valid_bytes: u64,
    pub damage: Option<Damage>,
}

/// Appends one record: `batch_index` is its place in the batch being written.
pub fn encode_record(sequence: u64, batch_index: u32, term: u64, payload: &[u8], out: &mut Vec<u8>) {
    let length = (payload.len() as u32).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&length);
    out.extend_from_slice(&[0; 4]); // checksum, patched below
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&batch_index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(payload);
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
}

struct Parsed<'a> {
    sequence: u64,
    batch_index: u32,
    term: u64,
    payload: &'a [u8],
    size: usize,
}

/// A record that parses and checks out at `at`.
fn record_at(bytes: &[u8], at: usize) -> Result<Parsed<'_>, &'static str> {
    let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) else {
        return Err("record header cut short");
    };
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let sequence = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let batch_index = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    let term = u64::from_le_bytes(header[20..28].try_into().expect("8 bytes"));
    if length > RECORD_PAYLOAD_BYTES_MAX {
        return Err("record length out of range");
    }
    let Some(payload) = bytes.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + length) else {
        return Err("record payload cut short");
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &header[8..]);
    if crc32c::crc32c_append(actual, payload) != checksum {
        return Err("record checksum mismatch");
    }
    Ok(Parsed { sequence, batch_index, term, payload, size: RECORD_HEADER_BYTES + length })
}

/// Is there a valid record after `from` of a batch that began after
/// `sequence`? Then the batch holding `sequence` was synced before it.
fn later_batch_after(bytes: &[u8], from: usize, sequence: u64) -> bool {
    let plausible_max = sequence.saturating_add(bytes.len() as u64);
    (from..bytes.len().saturating_sub(RECORD_HEADER_BYTES - 1)).any(|at| {
        let candidate = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        (sequence..plausible_max).contains(&candidate)
            && record_at(bytes, at).is_ok_and(|record| record.sequence.checked_sub(u64::from(record.batch_index)).is_some_and(|first| first > sequence))
    })
}

/// Scans a segment whose first record must carry `first_sequence`.
pub fn scan_segment(bytes: &[u8], first_sequence: u64) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    let mut expected = first_sequence;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok(record) if record.sequence == expected => {
                records.push(Record { sequence: record.sequence, term: record.term, payload: record.payload.to_vec() });
                at += record.size;
                expected += 1;
            }
            Ok(_) => {
                let damage = Damage::Corrupt { offset: at as u64, detail: "record out of sequence" };
                return Scan { records, valid_bytes: at as u64, damage: Some(damage) };
            }
            Err(detail) => {
                let damage = if later_batch_after(bytes, at + 1, expected) {
                    Damage::Corrupt { offset: at as u64, detail }
                } else {
                    Damage::TornTail { offset: at as u64 }
                };
                return Scan { records, valid_bytes: at as u64, damage: Some(damage) };
            }
        }
    }
    Scan { records, valid_bytes: at as u64, damage: None }
}
