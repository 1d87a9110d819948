//! Real RocksDB files in a temporary directory.

use std::collections::BTreeMap;

use proptest::prelude::*;
use storage::{Batch, Compaction, Durability, StorageError, Store, Table};

const BALANCES: Table = Table::new("balances");
const TRANSFERS: Table = Table::new("transfers");
const TRADES: Table = Table::new("trades");
const IDEMPOTENCY: Table = Table::new("idempotency");
const ORDERS_BY_USER: Table = Table::scattered("orders_by_user");
const TRANSFERS_BY_USER: Table = Table::scattered("transfers_by_user");
const TABLES: [Table; 6] = [BALANCES, TRANSFERS, TRADES, IDEMPOTENCY, ORDERS_BY_USER, TRANSFERS_BY_USER];

fn open(path: &std::path::Path) -> Store {
    Store::open(path, &TABLES).unwrap()
}

#[test]
fn batches_are_atomic_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut batch = Batch::default();
        batch.put(BALANCES, b"user-1", b"100");
        batch.put(TRANSFERS, b"t-1", b"leg");
        assert_eq!(batch.len(), 2);
        store.write(&mut batch, Durability::Synced).unwrap();
        let mut batch = Batch::default();
        batch.delete(BALANCES, b"user-1");
        store.write(&mut batch, Durability::Synced).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.get(BALANCES, b"user-1").unwrap(), None);
    assert_eq!(store.get(TRANSFERS, b"t-1").unwrap().as_deref(), Some(&b"leg"[..]));
    assert_eq!(store.get(TRADES, b"t-1").unwrap(), None, "tables are separate");
}

/// Databases written before the per-user indexes were compacted as
/// universal (every table leveled, the index files in the last level) open
/// as they are: their rows read back, new writes land among them, and the
/// compactions the new files set off (more than the four universal waits
/// for) keep every row.
#[test]
fn a_database_with_leveled_index_tables_opens_with_universal_ones() {
    let dir = tempfile::tempdir().unwrap();
    let index_key = |user: u64, id: u64| [user.to_be_bytes(), id.to_be_bytes()].concat();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&options, dir.path(), TABLES.map(|t| t.name())).unwrap();
        let index = db.cf_handle(TRANSFERS_BY_USER.name()).unwrap();
        for id in 0..2_000u64 {
            db.put_cf(&index, index_key(id % 50, id), []).unwrap();
        }
        db.compact_range_cf(&index, None::<&[u8]>, None::<&[u8]>);
    }
    {
        let store = open(dir.path());
        let mut batch = Batch::default();
        for file in 0..6u64 {
            for id in 2_000 + file * 100..2_100 + file * 100 {
                batch.put(TRANSFERS_BY_USER, &index_key(id % 50, id), &[]);
            }
            store.write(&mut batch, Durability::Journaled).unwrap();
            store.flush().unwrap();
        }
        let user_7 = store.scan_prefix(TRANSFERS_BY_USER, &7u64.to_be_bytes(), usize::MAX, true).unwrap();
        assert_eq!(user_7.len(), 40 + 12, "40 rows from before, 12 new");
        assert_eq!(user_7[0].0, index_key(7, 2_557), "newest first");
    }
    let store = open(dir.path());
    assert_eq!(store.scan_all(TRANSFERS_BY_USER).count(), 2_600, "every row, after whatever compactions ran");
}

#[test]
fn prefix_scans_are_bounded_and_ordered_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut batch = Batch::default();
    for (user, id) in [(1u64, 1u64), (1, 2), (1, 3), (2, 1), (0, 9), (1, u64::MAX)] {
        let mut key = user.to_be_bytes().to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        batch.put(ORDERS_BY_USER, &key, b"");
    }
    store.write(&mut batch, Durability::Journaled).unwrap();
    let ids = |rows: Vec<(Vec<u8>, Vec<u8>)>| rows.iter().map(|(k, _)| u64::from_be_bytes(k[8..16].try_into().unwrap())).collect::<Vec<_>>();
    let prefix = 1u64.to_be_bytes();
    assert_eq!(ids(store.scan_prefix(ORDERS_BY_USER, &prefix, 10, false).unwrap()), vec![1, 2, 3, u64::MAX]);
    assert_eq!(ids(store.scan_prefix(ORDERS_BY_USER, &prefix, 2, true).unwrap()), vec![u64::MAX, 3]);
    assert_eq!(ids(store.scan_prefix(ORDERS_BY_USER, &2u64.to_be_bytes(), 10, true).unwrap()), vec![1]);
    assert!(store.scan_prefix(ORDERS_BY_USER, &7u64.to_be_bytes(), 10, true).unwrap().is_empty());
    assert_eq!(ids(store.scan_prefix(ORDERS_BY_USER, &u64::MAX.to_be_bytes(), 10, true).unwrap()), Vec::<u64>::new());
}

/// The store knows no table but those it is given; a database holding
/// others (an earlier schema's) still opens, so its owner can read its
/// version and say what to do.
#[test]
fn tables_are_the_callers_and_unknown_ones_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut batch = Batch::default();
        batch.put(TRADES, b"t", b"1");
        store.write(&mut batch, Durability::Synced).unwrap();
    }
    let meta = Table::new("meta");
    let store = Store::open(dir.path(), &[meta]).unwrap();
    assert_eq!(store.get(meta, b"x").unwrap(), None);
    assert!(matches!(store.get(TRADES, b"t"), Err(StorageError::UnknownTable("trades"))));
    let mut batch = Batch::default();
    batch.put(Table::new("nowhere"), b"k", b"v");
    assert!(matches!(store.write(&mut batch, Durability::Synced), Err(StorageError::UnknownTable("nowhere"))));
    drop(store);
    assert!(matches!(Store::open(dir.path(), &[meta, meta]), Err(StorageError::TableTwice("meta"))));
    assert_eq!(open(dir.path()).get(TRADES, b"t").unwrap().as_deref(), Some(&b"1"[..]), "the unknown table kept its rows");
    assert_eq!(TRANSFERS_BY_USER.compaction(), Compaction::Universal);
}

#[test]
fn a_locked_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _open = open(dir.path());
    let error = Store::open(dir.path(), &TABLES).err().expect("RocksDB locks its directory").to_string();
    assert!(error.contains(&dir.path().display().to_string()), "{error}");
}

#[test]
fn within_a_batch_the_last_write_to_a_key_wins_whatever_the_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut batch = Batch::default();
    batch.put(BALANCES, b"b", b"first");
    batch.put(BALANCES, b"a", b"1");
    batch.delete(BALANCES, b"b");
    batch.put(BALANCES, b"c", b"x");
    batch.delete(BALANCES, b"c");
    batch.put(BALANCES, b"c", b"last");
    store.write(&mut batch, Durability::Journaled).unwrap();
    assert_eq!(store.get(BALANCES, b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get(BALANCES, b"b").unwrap(), None, "a delete after a put removes it");
    assert_eq!(store.get(BALANCES, b"c").unwrap().as_deref(), Some(&b"last"[..]), "a put after a delete keeps it");
}

#[derive(Clone, Debug)]
enum Op {
    Put { table: usize, key: Vec<u8>, value: Vec<u8>, encoded: bool },
    Delete { table: usize, key: Vec<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    // Few tables and short keys, so that writes collide; empty keys and
    // values too; zero bytes at the end ("a" and "a\0" are two keys); and
    // 14 to 17-byte keys alike in their first 14, on both sides of the 15
    // bytes the batch orders by number before it compares bytes.
    let short = proptest::collection::vec(0u8..4, 0..3);
    let long = proptest::collection::vec(0u8..3, 0..4).prop_map(|tail| [&[7u8; 14][..], &tail].concat());
    let key = prop_oneof![short, long];
    prop_oneof![
        (0usize..3, key.clone(), proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()).prop_map(|(table, key, value, encoded)| Op::Put {
            table,
            key,
            value,
            encoded
        }),
        (0usize..3, key).prop_map(|(table, key)| Op::Delete { table, key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Batches of puts (plain and through `put_with`) and deletes, in any
    /// order, leave every table as a map applying them one by one would:
    /// the keys and values kept in one buffer come back whole and in place,
    /// also when one batch is reused after each write.
    #[test]
    fn batches_store_what_a_map_model_holds(batches in proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..4)) {
        const TABLES: [Table; 3] = [BALANCES, TRANSFERS, IDEMPOTENCY];
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut model: BTreeMap<(usize, Vec<u8>), Vec<u8>> = BTreeMap::new();
        // One batch for all: a write leaves it empty for the next one.
        let mut batch = Batch::default();
        for ops in batches {
            for op in &ops {
                match op {
                    Op::Put { table, key, value, encoded: false } => batch.put(TABLES[*table], key, value),
                    Op::Put { table, key, value, encoded: true } => batch.put_with(TABLES[*table], key, |out| out.extend_from_slice(value)),
                    Op::Delete { table, key } => batch.delete(TABLES[*table], key),
                }
                match op {
                    Op::Put { table, key, value, .. } => model.insert((*table, key.clone()), value.clone()),
                    Op::Delete { table, key } => model.remove(&(*table, key.clone())),
                };
            }
            prop_assert_eq!(batch.len(), ops.len());
            store.write(&mut batch, Durability::Journaled).unwrap();
            prop_assert!(batch.is_empty(), "a written batch is left empty");
        }
        for (index, table) in TABLES.iter().enumerate() {
            let stored: Vec<(Vec<u8>, Vec<u8>)> = store.scan_all(*table).map(|row| row.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model.iter().filter(|((t, _), _)| *t == index).map(|((_, k), v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(stored, expected, "table {}", table.name());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A range scan, either way and bounded, is the model's range: keys at
    /// or after `start`, before `end`, whatever lies just outside.
    #[test]
    fn range_scans_are_the_models_range(
        keys in proptest::collection::btree_set(proptest::collection::vec(0u8..4, 0..4), 0..30),
        start in proptest::collection::vec(0u8..4, 0..4),
        end in proptest::collection::vec(0u8..5, 0..4),
        limit in 0usize..12,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut batch = Batch::default();
        for key in &keys {
            batch.put(TRADES, key, key);
        }
        store.write(&mut batch, Durability::Journaled).unwrap();
        let expected: Vec<Vec<u8>> = keys.iter().filter(|k| **k >= start && **k < end).cloned().collect();
        let forward: Vec<Vec<u8>> = store.scan_range(TRADES, &start, &end, limit, false).unwrap().into_iter().map(|(k, v)| { assert_eq!(k, v); k }).collect();
        let backward: Vec<Vec<u8>> = store.scan_range(TRADES, &start, &end, limit, true).unwrap().into_iter().map(|(k, _)| k).collect();
        prop_assert_eq!(&forward[..], &expected[..limit.min(expected.len())]);
        let newest: Vec<Vec<u8>> = expected.iter().rev().take(limit).cloned().collect();
        prop_assert_eq!(backward, newest);
    }
}

#[test]
fn a_checkpoint_is_the_state_when_taken_and_a_database_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db"));
    let mut batch = Batch::default();
    for i in 0..1_000u32 {
        batch.put(BALANCES, &i.to_be_bytes(), b"before");
    }
    // Journaled: in the memtable only, as the ledger writes; the checkpoint flushes it.
    store.write(&mut batch, Durability::Journaled).unwrap();
    let into = dir.path().join("checkpoint");
    store.checkpoint(&into).unwrap();
    batch.put(BALANCES, &0u32.to_be_bytes(), b"after");
    batch.put(TRADES, b"later", b"trade");
    store.write(&mut batch, Durability::Journaled).unwrap();

    let copy = open(&into);
    assert_eq!(copy.get(BALANCES, &0u32.to_be_bytes()).unwrap().as_deref(), Some(&b"before"[..]), "later writes do not reach it");
    assert_eq!(copy.get(TRADES, b"later").unwrap(), None);
    assert_eq!(copy.scan_all(BALANCES).count(), 1_000);
    let mut batch = Batch::default();
    batch.put(TRADES, b"in the copy", b"x");
    copy.write(&mut batch, Durability::Synced).unwrap();
    assert_eq!(store.get(TRADES, b"in the copy").unwrap(), None, "nor do its writes reach the original");
    assert_eq!(store.get(BALANCES, &0u32.to_be_bytes()).unwrap().as_deref(), Some(&b"after"[..]));
    assert!(matches!(store.checkpoint(&into), Err(StorageError::Operation { operation: "checkpoint", .. })), "an existing directory is refused");
}
