//! The waterfall every mark-to-market and every funding goes through.
//!
//! Each party of a market has an amount: above zero it is owed that much,
//! below zero it owes it. Through the market's settlement account (zero
//! before and after):
//! 1. each party that owes pays from its margin account, then, in cross
//!    margin, from its general account, as far as they go; what it cannot
//!    pay is its shortfall (it is bankrupt and is closed out);
//! 2. what was collected pays the parties owed; when it is short, the
//!    market's insurance fund covers the rest as far as it goes;
//! 3. when that is still short, the parties owed share what there is pro
//!    rata to what each is owed (the kernel's largest remainder: no unit
//!    made or lost);
//! 4. what is left over (the units rounding kept: payers round up,
//!    receivers down) goes to the insurance fund.

use ids::Amount;
use ledger_core::allocation::{pro_rata, AllocationError};

/// A party's amount and what it can pay with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obligation {
    /// Above zero: owed to it; below zero: it owes.
    pub amount: Amount,
    /// Its margin account in the market.
    pub margin: Amount,
    /// Its general account, when it may be drawn (cross margin); else 0.
    pub general: Amount,
}

/// What moves for a party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyMoves {
    pub from_margin: Amount,
    pub from_general: Amount,
    /// Paid to it (into its margin account).
    pub paid: Amount,
    /// What it owed and could not pay.
    pub shortfall: Amount,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    /// In the order of the obligations.
    pub parties: Vec<PartyMoves>,
    pub from_insurance: Amount,
    pub to_insurance: Amount,
    /// What the parties owed did not get (after the insurance fund).
    pub unpaid: Amount,
}

impl Settlement {
    /// What went into the settlement account.
    pub fn collected(&self) -> Amount {
        self.parties.iter().map(|party| party.from_margin + party.from_general).sum::<Amount>() + self.from_insurance
    }

    /// What left it.
    pub fn paid_out(&self) -> Amount {
        self.parties.iter().map(|party| party.paid).sum::<Amount>() + self.to_insurance
    }
}

/// Settles `obligations` with the market's `insurance` fund. Negative
/// balances count as empty. Refused (nothing settled) only when a short
/// pot times what one party is owed does not fit in 128 bits: amounts no
/// market's bounds allow.
pub fn settle(obligations: &[Obligation], insurance: Amount) -> Result<Settlement, AllocationError> {
    let mut parties = vec![PartyMoves::default(); obligations.len()];
    let mut collected: Amount = 0;
    let mut owed: Amount = 0;
    for (party, obligation) in parties.iter_mut().zip(obligations) {
        if obligation.amount < 0 {
            let due = -obligation.amount;
            party.from_margin = due.min(obligation.margin.max(0));
            party.from_general = (due - party.from_margin).min(obligation.general.max(0));
            party.shortfall = due - party.from_margin - party.from_general;
            collected += party.from_margin + party.from_general;
        } else {
            owed += obligation.amount;
        }
    }
    let from_insurance = (owed - collected).clamp(0, insurance.max(0));
    let pot = collected + from_insurance;
    let unpaid = (owed - pot).max(0);
    if unpaid == 0 {
        for (party, obligation) in parties.iter_mut().zip(obligations) {
            party.paid = obligation.amount.max(0);
        }
    } else {
        let weights: Vec<Amount> = obligations.iter().map(|obligation| obligation.amount.max(0)).collect();
        for (party, share) in parties.iter_mut().zip(pro_rata(pot, &weights)?) {
            party.paid = share;
        }
    }
    let to_insurance = (pot - owed).max(0);
    Ok(Settlement { parties, from_insurance, to_insurance, unpaid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owes(amount: Amount, margin: Amount, general: Amount) -> Obligation {
        Obligation { amount: -amount, margin, general }
    }

    fn owed(amount: Amount) -> Obligation {
        Obligation { amount, margin: 0, general: 0 }
    }

    #[test]
    fn losers_pay_winners_and_rounding_goes_to_insurance() {
        let settlement = settle(&[owes(101, 1_000, 0), owed(100)], 0).unwrap();
        assert_eq!(settlement.parties[0], PartyMoves { from_margin: 101, ..Default::default() });
        assert_eq!(settlement.parties[1].paid, 100);
        assert_eq!(settlement.to_insurance, 1);
        assert_eq!(settlement.collected(), settlement.paid_out());
    }

    #[test]
    fn margin_then_general_then_insurance_then_pro_rata() {
        // Owes 500 with 200 in margin and 100 in general: 200 short.
        // Owed 300 and 200; the fund has 50: the pot is 350, shared 3:2.
        let settlement = settle(&[owes(500, 200, 100), owed(300), owed(200)], 50).unwrap();
        assert_eq!(settlement.parties[0], PartyMoves { from_margin: 200, from_general: 100, paid: 0, shortfall: 200 });
        assert_eq!(settlement.from_insurance, 50);
        assert_eq!((settlement.parties[1].paid, settlement.parties[2].paid), (210, 140));
        assert_eq!(settlement.unpaid, 150);
        assert_eq!(settlement.to_insurance, 0);
        assert_eq!(settlement.collected(), settlement.paid_out());
        // A fund big enough pays the winners in full.
        let settlement = settle(&[owes(500, 200, 100), owed(300), owed(200)], 1_000).unwrap();
        assert_eq!(settlement.from_insurance, 200);
        assert_eq!(settlement.unpaid, 0);
        assert_eq!((settlement.parties[1].paid, settlement.parties[2].paid), (300, 200));
    }
}
