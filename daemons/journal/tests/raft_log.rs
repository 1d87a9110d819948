//! What a Raft replica asks of its journal, on real files: records with
//! their terms, reads of a range, truncation of conflicting entries, a reset
//! past a snapshot, the durable index that tells rot from a torn write, and
//! the synced state file beside it.

use std::fs;
use std::path::{Path, PathBuf};

use journal::*;
use proptest::prelude::*;

const CONTENT: Content = Content { kind: *b"RAFT", version: 1 };

fn entry(sequence: u64) -> Vec<u8> {
    format!("entry {sequence}").into_bytes()
}

/// Appends one batch of entries numbered from the journal's next sequence, each with `term`.
fn append(journal: &mut Journal, count: u64, term: u64) {
    let first = journal.next_sequence();
    let payloads: Vec<_> = (first..first + count).map(entry).collect();
    let written = journal.append_entries(payloads.iter().map(|payload| (term, payload.as_slice()))).unwrap();
    assert_eq!(written, first..first + count);
}

fn summary(records: &[Record]) -> Vec<(u64, u64)> {
    records.iter().map(|record| (record.sequence, record.term)).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jnl")).collect();
    paths.sort();
    paths
}

#[test]
fn terms_come_back_with_their_records_from_a_reopen_and_from_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 3, 1);
    journal.rotate().unwrap();
    append(&mut journal, 2, 2);
    append(&mut journal, 2, 5);
    let expected = vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 5), (7, 5)];
    assert_eq!(summary(&journal.read(1..8).unwrap()), expected);
    assert_eq!(summary(&journal.read(3..5).unwrap()), expected[2..4], "a range across the segments' border");
    assert_eq!(summary(&journal.read(0..100).unwrap()), expected, "clipped to what is held");
    assert!(journal.read(8..9).unwrap().is_empty(), "nothing past the end");
    assert_eq!(journal.read(6..7).unwrap()[0].payload, entry(6));
    drop(journal);
    let (journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(summary(&recovery.records), expected);
    assert_eq!(journal.first_sequence(), 1);
    assert_eq!(journal.next_sequence(), 8);
}

#[test]
fn records_after_a_cut_are_removed_durably_within_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 4, 1); // 1..=4
    journal.rotate().unwrap();
    append(&mut journal, 4, 2); // 5..=8
    journal.rotate().unwrap();
    append(&mut journal, 4, 3); // 9..=12
    assert_eq!(segments(dir.path()).len(), 3);

    assert_eq!(journal.truncate_after(12).unwrap(), 0, "nothing after the last record");
    assert_eq!(journal.truncate_after(10).unwrap(), 2, "within the last segment");
    assert_eq!(journal.next_sequence(), 11);
    assert_eq!(journal.truncate_after(6).unwrap(), 4, "across a segment's border: the third segment goes");
    assert_eq!(segments(dir.path()).len(), 2);
    // The leader's entries of term 4 replace the follower's.
    append(&mut journal, 3, 4);
    let expected = vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (7, 4), (8, 4), (9, 4)];
    assert_eq!(summary(&journal.read(1..100).unwrap()), expected);
    drop(journal);
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(summary(&recovery.records), expected);
    assert!(recovery.truncated.is_none(), "the cut was made whole, not left as a torn tail");

    // A cut just before a segment's first record leaves that segment empty, and appends go on in it.
    assert_eq!(journal.truncate_after(4).unwrap(), 5);
    assert_eq!(segments(dir.path()).len(), 2);
    append(&mut journal, 1, 6);
    drop(journal);
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(summary(&recovery.records), vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 6)]);

    // Down to nothing, then appends go on from the first sequence.
    assert_eq!(journal.truncate_after(0).unwrap(), 5);
    assert_eq!(journal.next_sequence(), 1);
    append(&mut journal, 2, 7);
    drop(journal);
    assert_eq!(summary(&Journal::open(dir.path(), 1, CONTENT).unwrap().1.records), vec![(1, 7), (2, 7)]);
}

#[test]
fn a_cut_below_the_oldest_record_kept_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 3, 1);
    journal.rotate().unwrap();
    append(&mut journal, 3, 1);
    assert_eq!(journal.remove_segments_through(3).unwrap(), 1);
    assert_eq!(journal.first_sequence(), 4);
    assert!(matches!(journal.truncate_after(2), Err(JournalError::Gap { .. })));
    assert_eq!(journal.next_sequence(), 7);
    assert_eq!(journal.read(1..10).unwrap().len(), 3, "4..=6, as before");
}

/// A crash between removing the later segments and cutting the one that
/// holds the cut leaves the records not yet removed: the journal still
/// opens, and the cut can be made again.
#[test]
fn a_crash_in_the_middle_of_a_cut_leaves_a_journal_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 4, 1);
    journal.rotate().unwrap();
    append(&mut journal, 4, 1);
    drop(journal);
    // What the first step of truncate_after(2) leaves: the later segment gone, the cut not made.
    fs::remove_file(segments(dir.path()).pop().unwrap()).unwrap();
    let (mut journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    assert_eq!(recovery.records.len(), 4);
    assert_eq!(journal.truncate_after(2).unwrap(), 2);
    drop(journal);
    assert_eq!(Journal::open(dir.path(), 1, CONTENT).unwrap().1.records.len(), 2);
}

#[test]
fn a_reset_starts_an_empty_journal_past_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 3, 1);
    journal.rotate().unwrap();
    append(&mut journal, 3, 2);
    journal.reset(101).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!((journal.first_sequence(), journal.next_sequence()), (101, 101));
    assert!(journal.read(1..200).unwrap().is_empty());
    append(&mut journal, 2, 9);
    drop(journal);
    let (journal, recovery) = Journal::open(dir.path(), 101, CONTENT).unwrap();
    assert_eq!(summary(&recovery.records), vec![(101, 9), (102, 9)]);
    assert_eq!(journal.first_sequence(), 101);
}

/// Damage to the last batch looks like a write cut short by a crash, and is
/// cut off as one, unless the replica knows the batch was synced: then it
/// is refused at every offset, and the file is left as it was.
#[test]
fn damage_at_or_before_the_durable_index_is_refused_even_in_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 2, 1);
    append(&mut journal, 3, 1);
    drop(journal);
    let path = segment_path_of(dir.path());
    let clean = journal::segment_written_bytes(&path).unwrap();
    let record_bytes = RECORD_HEADER_BYTES + entry(1).len();
    let last_batch_start = SEGMENT_HEADER_BYTES + 2 * record_bytes;
    for offset in last_batch_start..clean.len() {
        let mut damaged = clean.clone();
        damaged[offset] ^= 0x20;
        fs::write(&path, &damaged).unwrap();
        let record = (offset - last_batch_start) / record_bytes;
        let sequence = 3 + record as u64;
        // Without the durable index: a torn tail, cut at the damaged record.
        let (journal, recovery) = Journal::open(dir.path(), 1, CONTENT).unwrap();
        assert_eq!(recovery.records.len() as u64, sequence - 1, "flip at {offset}");
        drop(journal);
        fs::write(&path, &damaged).unwrap();
        // Knowing 5 durable: refused, the file untouched.
        match Journal::open_durable(dir.path(), 1, CONTENT, 5) {
            Err(error @ JournalError::Corrupt { expected_sequence, .. }) => {
                assert_eq!(expected_sequence, sequence, "flip at {offset}");
                assert!(error.to_string().contains("durable index"), "{error}");
            }
            other => panic!("flip at {offset}: expected Corrupt, got {:?}", other.map(|(_, r)| r.records.len())),
        }
        assert_eq!(fs::read(&path).unwrap(), damaged, "flip at {offset}: left for the operator");
        // Knowing only what precedes the damaged record durable: a torn tail again.
        let (_, recovery) = Journal::open_durable(dir.path(), 1, CONTENT, sequence - 1).unwrap();
        assert_eq!(recovery.records.len() as u64, sequence - 1, "flip at {offset}");
    }
}

#[test]
fn a_journal_that_ends_before_the_durable_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
    append(&mut journal, 4, 1);
    drop(journal);
    // The last two records gone whole, as a filesystem that lost the last blocks would leave it.
    let path = segment_path_of(dir.path());
    let clean = journal::segment_written_bytes(&path).unwrap();
    fs::write(&path, &clean[..clean.len() - 2 * (RECORD_HEADER_BYTES + entry(1).len())]).unwrap();
    match Journal::open_durable(dir.path(), 1, CONTENT, 4) {
        Err(error @ JournalError::Lost { last: 2, durable_through: 4, .. }) => assert!(error.to_string().contains("rejoin"), "{error}"),
        other => panic!("expected Lost, got {:?}", other.map(|(_, r)| r.records.len())),
    }
    // A wiped directory is the same: nothing where four records were promised.
    let wiped = tempfile::tempdir().unwrap();
    assert!(matches!(Journal::open_durable(wiped.path(), 1, CONTENT, 4), Err(JournalError::Lost { last: 0, .. })));
}

fn segment_path_of(dir: &Path) -> PathBuf {
    let mut all = segments(dir);
    assert_eq!(all.len(), 1);
    all.pop().unwrap()
}

#[test]
fn the_state_file_is_replaced_whole_and_refused_when_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-state");
    assert_eq!(state_file::read(&path).unwrap(), None);
    assert!(!state_file::exists(&path));
    state_file::write(&path, b"vote: term 3 for node 2").unwrap();
    state_file::write(&path, b"vote: term 4 for node 1").unwrap();
    assert_eq!(state_file::read(&path).unwrap().as_deref(), Some(b"vote: term 4 for node 1".as_slice()));
    assert!(!dir.path().join("raft-state.tmp").exists(), "nothing left beside it");
    let clean = fs::read(&path).unwrap();
    for offset in 0..clean.len() {
        let mut damaged = clean.clone();
        damaged[offset] ^= 0x01;
        fs::write(&path, &damaged).unwrap();
        assert!(matches!(state_file::read(&path), Err(JournalError::Corrupt { .. })), "flip at {offset} must not read as a vote, nor as none");
    }
    fs::write(&path, &clean[..clean.len() - 1]).unwrap();
    assert!(matches!(state_file::read(&path), Err(JournalError::Corrupt { .. })), "a short file is damage");
}

#[derive(Debug, Clone)]
enum Operation {
    Append { count: u64, term_step: u64 },
    Truncate { keep: prop::sample::Index },
    Rotate,
    RemoveThrough { through: prop::sample::Index },
    Reopen,
    Read { from: prop::sample::Index, length: u64 },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => (1u64..5, 0u64..2).prop_map(|(count, term_step)| Operation::Append { count, term_step }),
        2 => any::<prop::sample::Index>().prop_map(|keep| Operation::Truncate { keep }),
        1 => Just(Operation::Rotate),
        1 => any::<prop::sample::Index>().prop_map(|through| Operation::RemoveThrough { through }),
        1 => Just(Operation::Reopen),
        2 => (any::<prop::sample::Index>(), 0u64..8).prop_map(|(from, length)| Operation::Read { from, length }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Any run of appends, cuts, rotations, removals and reopens leaves the
    /// journal holding what a plain list would: every record kept with its
    /// term, in order, none that was cut.
    #[test]
    fn the_journal_holds_what_a_list_would_after_any_operations(operations in proptest::collection::vec(operation(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 1, CONTENT).unwrap();
        // The model: (sequence, term, payload) of every record kept, and the first sequence held.
        let mut model: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut first = 1u64;
        let mut term = 1u64;
        for operation in operations {
            let next = model.last().map_or(first, |(sequence, _, _)| sequence + 1);
            match operation {
                Operation::Append { count, term_step } => {
                    term += term_step;
                    let payloads: Vec<_> = (next..next + count).map(|s| format!("{s}@{term}").into_bytes()).collect();
                    prop_assert_eq!(journal.append_entries(payloads.iter().map(|p| (term, p.as_slice()))).unwrap(), next..next + count);
                    model.extend(payloads.into_iter().enumerate().map(|(i, p)| (next + i as u64, term, p)));
                }
                Operation::Truncate { keep } => {
                    let after = first - 1 + keep.index(model.len() + 1) as u64;
                    let removed = journal.truncate_after(after).unwrap();
                    let before = model.len();
                    model.retain(|(sequence, _, _)| *sequence <= after);
                    prop_assert_eq!(removed, (before - model.len()) as u64);
                }
                Operation::Rotate => journal.rotate().unwrap(),
                Operation::RemoveThrough { through } => {
                    let through = first - 1 + through.index(model.len() + 1) as u64;
                    journal.remove_segments_through(through).unwrap();
                    // Whole segments only: the journal says where it now starts.
                    prop_assert!(journal.first_sequence() <= through + 1 && journal.first_sequence() >= first);
                    first = journal.first_sequence();
                    model.retain(|(sequence, _, _)| *sequence >= first);
                }
                Operation::Reopen => {
                    drop(journal);
                    let (reopened, recovery) = Journal::open_durable(dir.path(), first, CONTENT, next - 1).unwrap();
                    journal = reopened;
                    prop_assert!(recovery.truncated.is_none());
                    let found: Vec<_> = recovery.records.into_iter().map(|r| (r.sequence, r.term, r.payload)).collect();
                    prop_assert_eq!(&found, &model);
                }
                Operation::Read { from, length } => {
                    let from = first + from.index(model.len() + 1) as u64;
                    let found: Vec<_> = journal.read(from..from + length).unwrap().into_iter().map(|r| (r.sequence, r.term, r.payload)).collect();
                    let expected: Vec<_> = model.iter().filter(|(s, _, _)| (from..from + length).contains(s)).cloned().collect();
                    prop_assert_eq!(found, expected);
                }
            }
            prop_assert_eq!(journal.next_sequence(), model.last().map_or(first, |(sequence, _, _)| sequence + 1));
        }
    }
}
