Feature: Withdrawal address book
  A user keeps the addresses she withdraws to in an address book. A new or
  changed address can be used only after a cooldown (2 s in this suite's
  config, 24 h by default), so that whoever steals a session cannot add an
  address and empty the account at once. Addresses are checked for the
  asset's network, and a user may allow withdrawals to her book only.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: A withdrawal to a fresh address is refused until its cooldown has passed
    Given alice has an account with 1 BTC
    When alice adds "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4" on bitcoin to her BTC address book as "cold wallet"
    And alice requests a withdrawal of 0.5 BTC to "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    Then the request is refused with ADDRESS_COOLING_DOWN
    And alice has 1.00000000 BTC available and 0.00000000 BTC locked
    When alice's new addresses have waited out their cooldown
    And alice requests a withdrawal of 0.5 BTC to "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    Then the withdrawal is PENDING
    And alice has 0.50000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario Outline: An address is checked for its asset's network
    Given the asset ETH with 8 decimals
    And alice has an account
    When alice adds "<address>" on <network> to her <asset> address book as "typo"
    Then the request is refused with BAD_USER_INPUT

    Examples:
      | asset | network  | address                                    | what is wrong                      |
      | BTC   | bitcoin  | bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5 | the bech32 checksum                |
      | BTC   | bitcoin  | 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3         | the base58check checksum           |
      | BTC   | bitcoin  | tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx | a testnet address                  |
      | ETH   | ethereum | 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD | the EIP-55 checksum (one letter's case) |
      | BTC   | ethereum | 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed | a network the asset is not on      |

  Scenario: With allowlist-only on, withdrawals go only to the address book
    Given alice has an account with 1000 USD
    And alice turns on allowlist-only withdrawals
    When alice requests a withdrawal of 100 USD to "DE89 3704 0044 0532 0130 00"
    Then the request is refused with ADDRESS_NOT_IN_BOOK
    When alice adds "DE89 3704 0044 0532 0130 00" on SEPA to her USD address book as "salary account"
    And alice's new addresses have waited out their cooldown
    And alice requests a withdrawal of 100 USD to "DE89 3704 0044 0532 0130 00"
    Then the withdrawal is PENDING
    And alice has 900.00 USD available and 0.00 USD locked

  Scenario: Changing the address book needs a fresh two-factor code
    Given alice has an account with two-factor authentication
    When alice adds "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4" on bitcoin to her BTC address book as "cold wallet" without a code
    Then the request is refused with TWO_FACTOR_REQUIRED
