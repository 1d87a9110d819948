//! Real RocksDB files in a temporary directory.

use storage::{Batch, Durability, Store, Table};

#[test]
fn batches_are_atomic_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.put(Table::Balances, b"user-1", b"100");
        batch.put(Table::Transfers, b"t-1", b"leg");
        assert_eq!(batch.len(), 2);
        store.write(batch, Durability::Synced).unwrap();
        let mut batch = Batch::default();
        batch.delete(Table::Balances, b"user-1");
        store.write(batch, Durability::Synced).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(Table::Balances, b"user-1").unwrap(), None);
    assert_eq!(store.get(Table::Transfers, b"t-1").unwrap().as_deref(), Some(&b"leg"[..]));
    assert_eq!(store.get(Table::Trades, b"t-1").unwrap(), None, "tables are separate");
}

#[test]
fn prefix_scans_are_bounded_and_ordered_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = Batch::default();
    for (user, id) in [(1u64, 1u64), (1, 2), (1, 3), (2, 1), (0, 9), (1, u64::MAX)] {
        let mut key = user.to_be_bytes().to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        batch.put(Table::OrdersByUser, &key, b"");
    }
    store.write(batch, Durability::Journaled).unwrap();
    let ids = |rows: Vec<(Vec<u8>, Vec<u8>)>| rows.iter().map(|(k, _)| u64::from_be_bytes(k[8..16].try_into().unwrap())).collect::<Vec<_>>();
    let prefix = 1u64.to_be_bytes();
    assert_eq!(ids(store.scan_prefix(Table::OrdersByUser, &prefix, 10, false).unwrap()), vec![1, 2, 3, u64::MAX]);
    assert_eq!(ids(store.scan_prefix(Table::OrdersByUser, &prefix, 2, true).unwrap()), vec![u64::MAX, 3]);
    assert_eq!(ids(store.scan_prefix(Table::OrdersByUser, &2u64.to_be_bytes(), 10, true).unwrap()), vec![1]);
    assert!(store.scan_prefix(Table::OrdersByUser, &7u64.to_be_bytes(), 10, true).unwrap().is_empty());
    assert_eq!(ids(store.scan_prefix(Table::OrdersByUser, &u64::MAX.to_be_bytes(), 10, true).unwrap()), Vec::<u64>::new());
}

#[test]
fn a_locked_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _open = Store::open(dir.path()).unwrap();
    let error = Store::open(dir.path()).err().expect("RocksDB locks its directory").to_string();
    assert!(error.contains(&dir.path().display().to_string()), "{error}");
}

#[test]
fn within_a_batch_the_last_write_to_a_key_wins_whatever_the_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut batch = Batch::default();
    batch.put(Table::Balances, b"b", b"first");
    batch.put(Table::Balances, b"a", b"1");
    batch.delete(Table::Balances, b"b");
    batch.put(Table::Balances, b"c", b"x");
    batch.delete(Table::Balances, b"c");
    batch.put(Table::Balances, b"c", b"last");
    store.write(batch, Durability::Journaled).unwrap();
    assert_eq!(store.get(Table::Balances, b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get(Table::Balances, b"b").unwrap(), None, "a delete after a put removes it");
    assert_eq!(store.get(Table::Balances, b"c").unwrap().as_deref(), Some(&b"last"[..]), "a put after a delete keeps it");
}
