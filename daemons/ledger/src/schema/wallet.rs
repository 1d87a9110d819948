//! The wallet's tables: every withdrawal by id, the pending ones, and each
//! user's. Balances are the kernel's accounts.

use ledger_api::wallet::{Answer, Balance, Query, Withdrawal, WithdrawalStatus, AVAILABLE, LOCKED};
use ledger_core::Owner;
use products::wallet::{tables, Wallet, WalletChanges, WalletState};
use storage::{Batch, Store, Table};

use super::{by_id, corrupt, exact, kernel, key2, meta, newest_of, newest_where, put_encoded, SchemaError, FILTER_SCAN_MAX, META};
use crate::query::{limit, Read};

pub const WITHDRAWALS: Table = Table::new(tables::WITHDRAWALS);
/// The withdrawals awaiting an operator's decision (id -> ()): start-up loads these.
pub const PENDING_WITHDRAWALS: Table = Table::new(tables::PENDING_WITHDRAWALS);
/// (user, withdrawal id) -> ().
pub const WITHDRAWALS_BY_USER: Table = Table::scattered(tables::WITHDRAWALS_BY_USER);

pub const TABLES: &[Table] = &[WITHDRAWALS, PENDING_WITHDRAWALS, WITHDRAWALS_BY_USER];

const META_NEXT_WITHDRAWAL: &[u8] = b"wallet.next_withdrawal";

pub fn write(batch: &mut Batch, wallet: &Wallet, changes: &WalletChanges) {
    for withdrawal in &changes.withdrawals {
        let id = withdrawal.id.to_be_bytes();
        put_encoded(batch, WITHDRAWALS, &id, withdrawal);
        batch.put(WITHDRAWALS_BY_USER, &key2(withdrawal.user, withdrawal.id), &[]);
        if withdrawal.status == WithdrawalStatus::Pending {
            batch.put(PENDING_WITHDRAWALS, &id, &[]);
        } else {
            batch.delete(PENDING_WITHDRAWALS, &id);
        }
    }
    put_encoded(batch, META, META_NEXT_WITHDRAWAL, &wallet.next_withdrawal());
}

pub fn load(store: &Store) -> Result<WalletState, SchemaError> {
    let mut state = WalletState { next_withdrawal: meta(store, META_NEXT_WITHDRAWAL)?.unwrap_or(1), ..WalletState::default() };
    for item in store.scan_all(PENDING_WITHDRAWALS) {
        let (key, _) = item?;
        let id = u64::from_be_bytes(exact(PENDING_WITHDRAWALS, &key)?);
        let withdrawal = withdrawal(store, id)?.ok_or_else(|| corrupt(PENDING_WITHDRAWALS, &key, "a pending withdrawal has no record"))?;
        state.pending_withdrawals.insert(id, withdrawal);
    }
    Ok(state)
}

pub fn withdrawal(store: &Store, id: u64) -> Result<Option<Withdrawal>, SchemaError> {
    by_id(store, WITHDRAWALS, id)
}

pub fn withdrawals_of_user(store: &Store, user: u64, limit: usize) -> Result<Vec<Withdrawal>, SchemaError> {
    newest_of(store, WITHDRAWALS_BY_USER, WITHDRAWALS, user, limit)
}

/// Everyone's withdrawals, newest first (the newest [`FILTER_SCAN_MAX`] looked at).
fn withdrawals_where(store: &Store, limit: usize, keep: impl Fn(&Withdrawal) -> bool) -> Result<Vec<Withdrawal>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(WITHDRAWALS, &[], FILTER_SCAN_MAX, true)? {
        let withdrawal: Withdrawal = super::decode(WITHDRAWALS, &key, &value)?;
        if keep(&withdrawal) {
            out.push(withdrawal);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// A user's balances by asset: AVAILABLE and LOCKED; assets never held, or
/// back at zero, are absent.
pub fn balances_of_user(store: &Store, user: u64) -> Result<Vec<(u32, Balance)>, SchemaError> {
    let mut out: Vec<(u32, Balance)> = Vec::new();
    for (account, stored) in kernel::accounts_of(store, Owner::User(user))? {
        let slot = match out.last_mut() {
            Some((asset, balance)) if *asset == account.asset => balance,
            _ => {
                out.push((account.asset, Balance::default()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        match account.purpose.0 {
            AVAILABLE => slot.available += stored.balance,
            LOCKED => slot.locked += stored.balance,
            _ => {}
        }
    }
    out.retain(|(_, balance)| *balance != Balance::default());
    Ok(out)
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Balances { user } => Answer::Balances(balances_of_user(store, user)?),
        Query::Withdrawal { id } => Answer::Withdrawal(withdrawal(store, id)?),
        Query::Withdrawals { user, status, limit: n } => {
            let keep = |w: &Withdrawal| status.is_none_or(|s| w.status == s);
            Answer::Withdrawals(match user {
                Some(user) => newest_where(store, WITHDRAWALS_BY_USER, WITHDRAWALS, user, limit(n)?, keep)?,
                None => withdrawals_where(store, limit(n)?, keep)?,
            })
        }
    })
}
