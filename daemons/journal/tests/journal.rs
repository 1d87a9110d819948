//! The journal on real files: append, reopen, torn tails, corruption at every
//! offset, segments.

use std::fs;

use journal::*;
use proptest::prelude::*;

const CONTENT: Content = Content { kind: *b"TEST", version: 7 };
const HEADER: usize = SEGMENT_HEADER_BYTES;

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("command number {i}").into_bytes()).collect()
}

/// A segment's bytes without the zeros written ahead of its end (every
/// payload here ends in a non-zero byte).
fn written(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end);
    bytes
}

fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1);
    entries.pop().unwrap()
}

#[test]
fn appended_batches_come_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert!(recovery.records.is_empty());
    let data = payloads(10);
    assert_eq!(journal.append(data[..3].iter().map(Vec::as_slice)).unwrap(), 1..4);
    assert_eq!(journal.append(data[3..].iter().map(Vec::as_slice)).unwrap(), 4..11);
    assert_eq!(journal.append(std::iter::empty()).unwrap(), 11..11);
    drop(journal);
    let (journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(recovery.records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), data);
    assert_eq!(recovery.records.iter().map(|r| r.sequence).collect::<Vec<_>>(), (1..11).collect::<Vec<_>>());
    assert!(recovery.truncated.is_none());
    assert_eq!(journal.next_sequence(), 11);
    let (_, from_seven) = Journal::open(dir.path(), 7, CONTENT).map(|(j, r)| (drop(j), r)).unwrap();
    assert_eq!(from_seven.records.first().map(|r| r.sequence), Some(7));
}

#[test]
fn a_torn_tail_is_truncated_at_every_cut_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.append(payloads(4).iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let full = written(&path);
    let last_record_start = full.len() - (RECORD_HEADER_BYTES + b"command number 3".len());
    for cut in last_record_start..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
        assert_eq!(recovery.records.len(), 3, "cut at {cut}");
        let expected_truncation = (cut > last_record_start).then(|| (path.clone(), last_record_start as u64, (cut - last_record_start) as u64));
        assert_eq!(recovery.truncated, expected_truncation, "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last_record_start as u64);
        assert_eq!(journal.append([b"again".as_slice()]).unwrap(), 4..5);
    }
}

/// A segment cut anywhere (a lost tail, or a file truncated in the middle by
/// an operator's copy): recovery keeps the whole records before the cut and
/// cuts the partial one. The journal cannot know the lost records were
/// acknowledged; what lies above it does (the ledger's database ahead of its
/// journal, matching's outputs behind the ledger's), see their tests.
#[test]
fn a_cut_at_every_offset_keeps_the_whole_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let data = payloads(6);
    for pair in data.chunks(2) {
        journal.append(pair.iter().map(Vec::as_slice)).unwrap();
    }
    drop(journal);
    let path = only_segment(dir.path());
    let full = written(&path);
    let record_bytes = RECORD_HEADER_BYTES + b"command number 0".len();
    for cut in 0..=full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let (journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let whole = cut.saturating_sub(HEADER) / record_bytes;
        assert_eq!(recovery.records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), data[..whole], "cut at {cut}");
        // A cut inside the header leaves a segment being created: its header is written again.
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + whole * record_bytes) as u64, "cut at {cut}: the partial record is gone");
        assert_eq!(recovery.rewrite_header, cut < HEADER, "cut at {cut}");
        assert_eq!(journal.next_sequence(), whole as u64 + 1);
    }
}

/// Zeros after the last record are the space written ahead of the end: the
/// journal goes on over them, and reports nothing cut.
#[test]
fn zeros_are_written_ahead_of_the_end_and_batches_go_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.append(payloads(2).iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let good = written(&path).len() as u64;
    assert_eq!(fs::metadata(&path).unwrap().len(), good + PREPARED_AHEAD_BYTES, "a stretch of zeros after the first batch");
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!((recovery.records.len(), recovery.truncated), (2, None));
    assert_eq!(fs::metadata(&path).unwrap().len(), good + PREPARED_AHEAD_BYTES, "start-up leaves the zeros");
    assert_eq!(journal.append([b"third".as_slice()]).unwrap(), 3..4);
    // Enough batches to use up more than one stretch: each asks for the next in time.
    let big = vec![7u8; 100 << 10];
    for _ in 0..50 {
        journal.append([big.as_slice()]).unwrap();
    }
    drop(journal);
    let (_, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(recovery.records.len(), 53);
    assert_eq!(recovery.records[2].payload, b"third");
    assert!(recovery.records[3..].iter().all(|r| r.payload == big));
    let length = fs::metadata(&path).unwrap().len();
    let records_end = written(&path).len() as u64;
    assert!(length > records_end && length - records_end <= PREPARED_AHEAD_BYTES * 3 / 2, "{length} bytes, records to {records_end}");
}

/// A batch that would reach the stretch of zeros still being written waits
/// for it: the zeros must never land on records.
#[test]
fn batches_wait_for_a_slow_stretch_of_zeros_rather_than_be_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.delay_zeros(std::time::Duration::from_millis(100));
    let big: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i + 1; 100 << 10]).collect();
    for payload in &big {
        journal.append([payload.as_slice()]).unwrap();
    }
    drop(journal);
    let (_, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(recovery.truncated, None);
    assert_eq!(recovery.records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), big);
}

/// A batch torn by a crash over the zeros: whatever of it reached the disk
/// is cut off, zeros and all.
#[test]
fn a_torn_batch_in_the_zeros_is_cut_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.append(payloads(2).iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let mut bytes = written(&path);
    let good = bytes.len();
    let mut torn = Vec::new();
    encode_record(3, 0, 0, b"never synced", &mut torn);
    bytes.extend_from_slice(&torn[..torn.len() - 5]);
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&path, &bytes).unwrap();
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(recovery.records.len(), 2);
    assert_eq!(recovery.truncated.map(|t| (t.1, t.2)), Some((good as u64, (bytes.len() - good) as u64)));
    assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
    assert_eq!(journal.append([b"again".as_slice()]).unwrap(), 3..4);
}

#[test]
fn a_bit_flip_in_acknowledged_records_stops_start_up_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let data = payloads(3);
    journal.append(data[..2].iter().map(Vec::as_slice)).unwrap();
    journal.append(data[2..].iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let clean = written(&path);
    // Every byte of the first batch: a valid record of a later batch proves
    // that the first was synced, so the damage is not a torn write.
    let last_record_start = clean.len() - (RECORD_HEADER_BYTES + b"command number 2".len());
    for offset in 0..last_record_start {
        let mut damaged = clean.clone();
        damaged[offset] ^= 0x10;
        fs::write(&path, &damaged).unwrap();
        match Journal::open(dir.path(), 1, CONTENT) {
            Err(JournalError::Corrupt { offset: at, .. }) => assert!(at as usize <= offset, "offset {offset} reported at {at}"),
            Err(other) => panic!("flip at {offset}: unexpected error {other}"),
            Ok(_) => panic!("flip at {offset} was not detected"),
        }
        assert_eq!(fs::read(&path).unwrap(), damaged, "a refused journal is left untouched for the operator");
    }
    fs::write(&path, &clean).unwrap();
    assert_eq!(Journal::open(dir.path(), 1, CONTENT).unwrap().1.records.len(), 3);
}

/// The last batch may reach the disk with any of its sectors missing when
/// the power goes before its fdatasync: damage there, even with valid
/// records of the same batch after it, is a torn tail, cut at the damage.
#[test]
fn damage_anywhere_in_the_last_batch_is_a_torn_tail_cut_at_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let data = payloads(5);
    journal.append(data[..2].iter().map(Vec::as_slice)).unwrap();
    journal.append(data[2..].iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let clean = written(&path);
    let record_bytes = RECORD_HEADER_BYTES + b"command number 0".len();
    let last_batch_start = HEADER + 2 * record_bytes;
    for offset in last_batch_start..clean.len() {
        for damage in ["flip", "zeroed sector"] {
            let mut damaged = clean.clone();
            let record = (offset - last_batch_start) / record_bytes;
            let record_start = last_batch_start + record * record_bytes;
            if damage == "flip" {
                damaged[offset] ^= 0x04;
            } else {
                // A hole of 8 bytes in this record, the records after it intact.
                let end = (offset + 8).min(record_start + record_bytes);
                damaged[offset..end].fill(0);
                if damaged == clean {
                    continue;
                }
            }
            fs::write(&path, &damaged).unwrap();
            let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap_or_else(|e| panic!("{damage} at {offset}: {e}"));
            assert_eq!(recovery.records.len(), 2 + record, "{damage} at {offset}: the records before the damaged one are kept");
            assert_eq!(recovery.truncated.as_ref().map(|t| t.1), Some(record_start as u64), "{damage} at {offset}");
            assert_eq!(fs::metadata(&path).unwrap().len(), record_start as u64, "{damage} at {offset}: cut at the damaged record");
            assert_eq!(journal.append([b"again".as_slice()]).unwrap(), (3 + record as u64)..(4 + record as u64));
        }
    }
}

#[test]
fn segments_of_the_earlier_record_formats_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("journal-00000000000000000001.log");
    fs::write(&old, b"records of format 1").unwrap();
    match Journal::open(dir.path(), 1, CONTENT) {
        Err(error @ JournalError::OldFormat { found: 1, .. }) => assert!(error.to_string().contains("earlier release"), "{error}"),
        other => panic!("an old segment must be refused, got {:?}", other.map(|(_, r)| r.records.len())),
    }
    assert_eq!(fs::read(&old).unwrap(), b"records of format 1");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no new segment was created beside it");

    // Format 2: records from the first byte, no header.
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    encode_record(1, 0, 0, b"a format 2 record", &mut records);
    encode_record(2, 1, 0, b"another", &mut records);
    let segment = dir.path().join("journal-00000000000000000001.jnl");
    fs::write(&segment, &records).unwrap();
    match Journal::open(dir.path(), 1, CONTENT) {
        Err(error @ JournalError::OldFormat { found: 2, .. }) => {
            let message = error.to_string();
            assert!(message.contains("journal format 2") && message.contains("reads format 4") && message.contains("Drain"), "{message}");
        }
        other => panic!("a format 2 segment must be refused, got {:?}", other.map(|(_, r)| r.records.len())),
    }
    assert_eq!(fs::read(&segment).unwrap(), records, "left as it was");

    // Format 3: a header, records without their term.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = segment_header(CONTENT).to_vec();
    bytes[6..8].copy_from_slice(&3u16.to_le_bytes());
    let checksum = crc32c::crc32c(&bytes[..16]);
    bytes[16..20].copy_from_slice(&checksum.to_le_bytes());
    bytes.extend_from_slice(&records);
    let segment = dir.path().join("journal-00000000000000000001.jnl");
    fs::write(&segment, &bytes).unwrap();
    match Journal::open(dir.path(), 1, CONTENT) {
        Err(error @ JournalError::OldFormat { found: 3, .. }) => assert!(error.to_string().contains("reads format 4"), "{error}"),
        other => panic!("a format 3 segment must be refused, got {:?}", other.map(|(_, r)| r.records.len())),
    }
    assert_eq!(fs::read(&segment).unwrap(), bytes, "left as it was");
}

/// Records of another version of their owner's format (an older release's
/// ledger entries, say) are refused by name, never read or taken for damage.
#[test]
fn a_journal_of_other_contents_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.append(payloads(3).iter().map(Vec::as_slice)).unwrap();
    drop(journal);
    let before = fs::read(only_segment(dir.path())).unwrap();
    for other in [Content { version: 8, ..CONTENT }, Content { kind: *b"LDGR", ..CONTENT }] {
        match Journal::open(dir.path(), 1, other) {
            Err(error @ JournalError::ContentMismatch { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&CONTENT.to_string()) && message.contains(&other.to_string()), "{message}");
            }
            result => panic!("{other} must be refused, got {:?}", result.map(|(_, r)| r.records.len())),
        }
    }
    assert_eq!(fs::read(only_segment(dir.path())).unwrap(), before);
    assert_eq!(Journal::open(dir.path(), 1, CONTENT).unwrap().1.records.len(), 3);
}

/// A crash while a segment was being created leaves it empty, or with part
/// of its header, or with a header the disk wrote in part: nothing in it
/// was acknowledged, so it is started again.
#[test]
fn a_last_segment_with_an_unfinished_header_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    drop(journal);
    let path = only_segment(dir.path());
    let header = fs::read(&path).unwrap();
    assert_eq!(header, segment_header(CONTENT));
    let mut torn = header.clone();
    torn[9] = 0;
    for unfinished in [Vec::new(), header[..7].to_vec(), vec![0; HEADER], torn] {
        fs::write(&path, &unfinished).unwrap();
        let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap_or_else(|e| panic!("{unfinished:?}: {e}"));
        assert!(recovery.records.is_empty() && recovery.rewrite_header, "{unfinished:?}");
        assert_eq!(fs::read(&path).unwrap(), header, "{unfinished:?}");
        assert_eq!(journal.append([b"first".as_slice()]).unwrap(), 1..2);
        drop(journal);
        assert_eq!(Journal::open(dir.path(), 1, CONTENT).unwrap().1.records.len(), 1);
        fs::write(&path, &header).unwrap();
    }
}

#[test]
fn segments_rotate_and_old_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    journal.append(payloads(5).iter().map(Vec::as_slice)).unwrap();
    journal.rotate().unwrap();
    journal.append(payloads(5).iter().map(Vec::as_slice)).unwrap();
    journal.rotate().unwrap();
    assert_eq!(journal.segment_count(), 3);
    let mut segments: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    for full in &segments[..2] {
        assert_eq!(fs::read(full).unwrap(), written(full), "a segment that another follows keeps no zeros: {}", full.display());
    }
    assert_eq!(journal.remove_segments_through(7).unwrap(), 1, "the second segment still holds 8..10");
    drop(journal);
    let (journal, recovery) = Journal::open(dir.path(), 8, CONTENT).unwrap();
    assert_eq!(recovery.records.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![8, 9, 10]);
    assert_eq!(journal.next_sequence(), 11);
    drop(journal);
    match Journal::open(dir.path(), 3, CONTENT) {
        Err(JournalError::Gap { .. }) => {}
        other => panic!("replay from a removed segment must fail, got {:?}", other.map(|(_, r)| r.records.len())),
    }
}

#[test]
fn oversized_records_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let big = vec![0; RECORD_PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(journal.append([big.as_slice()]), Err(JournalError::RecordTooLarge { .. })));
    assert_eq!(journal.append([b"ok".as_slice()]).unwrap(), 1..2);
}

proptest! {
    /// The pure scanner never panics and never returns a record that was not written.
    #[test]
    fn scanning_damaged_bytes_returns_only_written_records(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
        damage_at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        for (i, payload) in records.iter().enumerate() {
            encode_record(100 + i as u64, (i % 3) as u32, i as u64 / 2, payload, &mut bytes);
        }
        let at = damage_at.index(bytes.len());
        bytes[at] ^= flip;
        bytes.truncate(at + 1 + cut.index(bytes.len() - at));
        let scan = scan_segment(&bytes, 100);
        prop_assert!(scan.damage.is_some());
        for (i, record) in scan.records.iter().enumerate() {
            prop_assert_eq!(record.sequence, 100 + i as u64);
            prop_assert_eq!(&record.payload, &records[i]);
        }
    }
}

#[test]
fn a_failed_fdatasync_is_reported_then_refuses_everything_and_recovery_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let data = payloads(6);
    assert_eq!(journal.append(data[..2].iter().map(Vec::as_slice)).unwrap(), 1..3);
    // The second batch from now fails its fdatasync with EIO, as a failing disk would.
    journal.inject_sync_failure(1, 5);
    assert_eq!(journal.append(data[2..4].iter().map(Vec::as_slice)).unwrap(), 3..5);
    let failed = journal.append(data[4..5].iter().map(Vec::as_slice)).unwrap_err();
    assert!(matches!(&failed, JournalError::SyncFailed { source } if source.raw_os_error() == Some(5)), "{failed:?}");
    assert!(failed.to_string().contains("must stop"), "the error says what to do: {failed}");
    // Never retried blindly: the journal refuses everything after.
    assert!(matches!(journal.append(data[5..].iter().map(Vec::as_slice)), Err(JournalError::Poisoned)));
    assert!(matches!(journal.append(data[5..].iter().map(Vec::as_slice)), Err(JournalError::Poisoned)));
    assert_eq!(journal.next_sequence(), 5, "the failed batch was not acknowledged");
    drop(journal);
    // Start-up finds every acknowledged record; the unacknowledged one may be there too (it was written), never a later one.
    let (journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    let recovered: Vec<_> = recovery.records.iter().map(|r| r.payload.clone()).collect();
    assert!(recovered == data[..4] || recovered == data[..5], "{} records", recovered.len());
    assert_eq!(journal.next_sequence(), recovered.len() as u64 + 1);
}
