//! Withdrawal addresses checked for their network, so that a typo is caught
//! before money leaves rather than lost after: Bitcoin's bech32 (BIP 173)
//! and bech32m (BIP 350) segwit addresses and base58check legacy ones, and
//! Ethereum's EIP-55 mixed-case checksums.

use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

/// A network whose addresses the gateway knows how to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Network {
    Bitcoin,
    BitcoinTestnet,
    Ethereum,
}

impl Network {
    pub const ALL: [Network; 3] = [Network::Bitcoin, Network::BitcoinTestnet, Network::Ethereum];

    /// As written in the config and the API: `bitcoin`, `bitcoin-testnet`, `ethereum`.
    pub fn name(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::BitcoinTestnet => "bitcoin-testnet",
            Network::Ethereum => "ethereum",
        }
    }

    pub fn parse(name: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.name().eq_ignore_ascii_case(name.trim()))
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not a {network} address: {reason}")]
    Invalid { network: &'static str, reason: &'static str },
    #[error("this is an address of another Bitcoin network (mainnet and testnet addresses differ)")]
    OtherNetwork,
    #[error("the EIP-55 checksum does not match: a letter's case is wrong, which is how a typo shows; copy the address again")]
    Checksum,
}

/// `address` if it is one of `network`'s, in its canonical form (bech32 in
/// lower case, Ethereum with its EIP-55 checksum); why not otherwise.
pub fn check(network: Network, address: &str) -> Result<String, AddressError> {
    let address = address.trim();
    match network {
        Network::Bitcoin | Network::BitcoinTestnet => bitcoin(network, address),
        Network::Ethereum => ethereum(address),
    }
}

fn bitcoin(network: Network, address: &str) -> Result<String, AddressError> {
    let invalid = |reason| AddressError::Invalid { network: network.name(), reason };
    let mainnet = network == Network::Bitcoin;
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("bc1") || lower.starts_with("tb1") || lower.starts_with("bcrt1") {
        // All upper case is as good as all lower (for QR codes); mixed is not (BIP 173).
        if address != lower && address != address.to_ascii_uppercase() {
            return Err(invalid("a bech32 address is all lower case or all upper case"));
        }
        // Witness version, program length, and bech32 for v0, bech32m after.
        let (hrp, _, _) = bech32::segwit::decode(&lower).map_err(|_| invalid("its bech32 checksum or witness program is wrong"))?;
        let ours = if mainnet { hrp.is_valid_on_mainnet() } else { hrp.is_valid_on_testnet() };
        return if ours { Ok(lower) } else { Err(AddressError::OtherNetwork) };
    }
    let decoded = bs58::decode(address).with_check(None).into_vec().map_err(|_| invalid("its base58check checksum is wrong"))?;
    let [version, hash @ ..] = decoded.as_slice() else { return Err(invalid("it is empty")) };
    if hash.len() != 20 {
        return Err(invalid("a legacy address holds a 20-byte hash"));
    }
    match (version, mainnet) {
        // P2PKH and P2SH.
        (0x00 | 0x05, true) | (0x6f | 0xc4, false) => Ok(address.to_string()),
        (0x00 | 0x05 | 0x6f | 0xc4, _) => Err(AddressError::OtherNetwork),
        _ => Err(invalid("its version byte is not a payment address's")),
    }
}

/// The EIP-55 form of 40 hex digits: a letter is upper case when the
/// matching nibble of Keccak-256 of the lower-case hex is 8 or more.
fn eip55(hex: &str) -> String {
    let lower = hex.to_ascii_lowercase();
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

fn ethereum(address: &str) -> Result<String, AddressError> {
    let invalid = |reason| AddressError::Invalid { network: "ethereum", reason };
    let hex = address.strip_prefix("0x").ok_or(invalid("it starts with 0x"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("it is 0x and 40 hex digits"));
    }
    let checksummed = eip55(hex);
    let all_one_case = hex == hex.to_ascii_lowercase() || hex == hex.to_ascii_uppercase();
    // All one case carries no checksum (EIP-55); mixed case must be the checksum.
    if !all_one_case && checksummed[2..] != *hex {
        return Err(AddressError::Checksum);
    }
    Ok(checksummed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bitcoin_addresses_of_every_kind_pass_and_typos_do_not() {
        let good = [
            // BIP 173: P2WPKH, upper case too; BIP 350: P2TR (bech32m).
            ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
            ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"),
            // P2PKH and P2SH.
            ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
        ];
        for (address, canonical) in good {
            assert_eq!(check(Network::Bitcoin, address), Ok(canonical.to_string()), "{address}");
        }
        let bad = [
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",                     // last character changed
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",                     // v0 with a bech32m checksum (BIP 350)
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", // v1 with a bech32 checksum
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLx",
            "",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ];
        for address in bad {
            assert!(matches!(check(Network::Bitcoin, address), Err(AddressError::Invalid { .. })), "{address}");
        }
        assert_eq!(check(Network::Bitcoin, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"), Err(AddressError::OtherNetwork));
        assert_eq!(check(Network::Bitcoin, "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"), Err(AddressError::OtherNetwork));
        assert!(check(Network::BitcoinTestnet, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx").is_ok());
        assert!(check(Network::BitcoinTestnet, "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn").is_ok());
        assert_eq!(check(Network::BitcoinTestnet, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"), Err(AddressError::OtherNetwork));
    }

    #[test]
    fn ethereum_addresses_carry_their_eip55_checksum() {
        // EIP-55's own examples.
        for address in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(check(Network::Ethereum, address), Ok(address.to_string()));
            assert_eq!(check(Network::Ethereum, &address.to_ascii_lowercase().replace("0X", "0x")), Ok(address.to_string()), "all lower case: no checksum");
        }
        assert_eq!(check(Network::Ethereum, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"), Err(AddressError::Checksum));
        for bad in ["5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "0xZZAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"] {
            assert!(matches!(check(Network::Ethereum, bad), Err(AddressError::Invalid { .. })), "{bad}");
        }
        assert_eq!(Network::parse("Bitcoin-Testnet"), Some(Network::BitcoinTestnet));
        assert_eq!(Network::parse("dogecoin"), None);
    }

    proptest! {
        #[test]
        fn no_text_panics(text in ".{0,120}", network in 0usize..3) {
            let _ = check(Network::ALL[network], &text);
        }

        #[test]
        fn a_changed_character_is_caught(at in 0usize..42, replacement in "[0-9a-zA-Z]") {
            let address = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
            let at = at % address.len();
            let mut changed: Vec<char> = address.chars().collect();
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(!changed[at].eq_ignore_ascii_case(&replacement));
            changed[at] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert!(check(Network::Bitcoin, &changed).is_err(), "{changed}");
        }
    }
}
