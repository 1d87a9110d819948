//! marionette-ledger: the pure [`ledger_core::Ledger`] behind a write-ahead
//! journal and RocksDB. `schema` is how the ledger's records sit in RocksDB.

pub mod schema;
pub mod service;
