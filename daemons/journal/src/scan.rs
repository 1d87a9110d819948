//! Reading a journal segment back: a pure function over its bytes.
//!
//! A record is `[length u32][crc32c u32][sequence u64][payload]`, little
//! endian, the checksum covering length, sequence and payload.
//!
//! Where a record fails to parse, the rest of the segment decides what it is:
//! if a valid record with a later sequence follows, the damage is inside data
//! that was acknowledged, which is corruption and stops recovery. If nothing
//! valid follows, it is the tail of a write that a crash cut short, which is
//! truncated. (A damaged *last* record is indistinguishable from a torn one;
//! see ARCHITECTURE.md.)

pub const RECORD_HEADER_BYTES: usize = 16;
/// Refused on write and treated as damage on read.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
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

pub fn encode_record(sequence: u64, payload: &[u8], out: &mut Vec<u8>) {
    let length = (payload.len() as u32).to_le_bytes();
    let sequence = sequence.to_le_bytes();
    let checksum = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&length), &sequence), payload);
    out.extend_from_slice(&length);
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(&sequence);
    out.extend_from_slice(payload);
}

/// A record that parses and checks out at `at`, with its total size.
fn record_at(bytes: &[u8], at: usize) -> Result<(u64, &[u8], usize), &'static str> {
    let Some(header) = bytes.get(at..at + RECORD_HEADER_BYTES) else {
        return Err("record header cut short");
    };
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let sequence = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if length > RECORD_PAYLOAD_BYTES_MAX {
        return Err("record length out of range");
    }
    let Some(payload) = bytes.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + length) else {
        return Err("record payload cut short");
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &header[8..16]);
    if crc32c::crc32c_append(actual, payload) != checksum {
        return Err("record checksum mismatch");
    }
    Ok((sequence, payload, RECORD_HEADER_BYTES + length))
}

/// Is there any valid record with a sequence at or after `sequence` that starts after `from`?
fn valid_record_after(bytes: &[u8], from: usize, sequence: u64) -> bool {
    let plausible_max = sequence.saturating_add(bytes.len() as u64);
    (from..bytes.len().saturating_sub(RECORD_HEADER_BYTES - 1)).any(|at| {
        let candidate = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        (sequence..plausible_max).contains(&candidate) && record_at(bytes, at).is_ok()
    })
}

/// Scans a segment whose first record must carry `first_sequence`.
pub fn scan_segment(bytes: &[u8], first_sequence: u64) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    let mut expected = first_sequence;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((sequence, payload, size)) if sequence == expected => {
                records.push(Record { sequence, payload: payload.to_vec() });
                at += size;
                expected += 1;
            }
            Ok(_) => {
                let damage = Damage::Corrupt { offset: at as u64, detail: "record out of sequence" };
                return Scan { records, valid_bytes: at as u64, damage: Some(damage) };
            }
            Err(detail) => {
                let damage = if valid_record_after(bytes, at + 1, expected) {
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
