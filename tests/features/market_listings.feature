Feature: Markets listed as exchanges list them
  An operator lists BTC-USD at a tick of 0.01 USD and a lot of 0.0001 BTC,
  although one tick on one lot (0.000001 USD) is a ten-thousandth of a cent.
  A trade's notional is rounded to the cent by a stated rule: the buyer pays
  it rounded up, the seller receives it rounded down, and the difference
  goes to the house's revenue with the fees. A buy's hold covers its
  notional rounded up on every fill. Money stays exact and conserved.

  Background:
    Given a running Marionette with the market BTC-USD listed at a tick of 0.01 USD and a lot of 0.0001 BTC
    And alice has an account with 1000 USD
    And bob has an account with 1 BTC

  Scenario: The market shows the tick and the lot it was listed with
    Then the market BTC-USD has a tick size of 0.01 and a lot size of 0.0001

  Scenario: A buy holds its notional with a cent of rounding per lot, and its fee
    # 0.0003 BTC at 49,000 USD is 14.70 USD; under a cent of rounding on each of
    # its three lots can make that 14.72; the 0.2% fee rounds up to 0.03; one
    # cent more covers the cumulative rounding of fees.
    When alice places a limit buy order for 0.0003 BTC at 49000 USD
    Then the order is OPEN
    And alice has 985.24 USD available and 14.76 USD locked

  Scenario: A trade between cents: the buyer pays it rounded up, the seller receives it rounded down
    # 0.0003 BTC at 50,000.03 USD is 15.000009 USD: alice pays 15.01 and bob
    # receives 15.00. Fees are of the exact notional, rounded up: 0.2% is 0.04
    # and 0.1% is 0.02. The house takes 0.01 of rounding and 0.06 of fees.
    When bob places a limit sell order for 0.0003 BTC at 50000.03 USD
    And alice places a limit buy order for 0.0003 BTC at 50000.03 USD
    Then the order is FILLED with 0.0003 BTC filled at an average price of 50000.03 USD
    And the latest trade of BTC-USD is 0.0003 BTC at 50000.03 USD, taken by a buyer
    And alice paid a fee of 0.04 USD
    And bob paid a fee of 0.02 USD
    And alice has 984.95 USD available and 0.00 USD locked
    And alice has 0.00030000 BTC available and 0.00000000 BTC locked
    And bob has 14.98 USD available and 0.00 USD locked
    And bob has 0.99970000 BTC available and 0.00000000 BTC locked
    And alice's USD ledger entries are, newest first: FEE -0.04, ROUNDING -0.01, TRADE -15.00, DEPOSIT 1000.00
    And bob's USD ledger entries are, newest first: FEE -0.02, TRADE 15.00
    And the house has 0.00 USD of inventory and 0.07 USD of revenue
    And no money was created or destroyed

  Scenario: A trade of whole cents does not round
    # 0.0004 BTC at 50,000 USD is exactly 20.00 USD: both sides move 20.00.
    When bob places a limit sell order for 0.0004 BTC at 50000 USD
    And alice places a limit buy order for 0.0004 BTC at 50000 USD
    Then the order is FILLED with 0.0004 BTC filled at an average price of 50000 USD
    And alice's USD ledger entries are, newest first: FEE -0.04, TRADE -20.00, DEPOSIT 1000.00
    And bob's USD ledger entries are, newest first: FEE -0.02, TRADE 20.00
    And the house has 0.00 USD of inventory and 0.06 USD of revenue
    And no money was created or destroyed

  Scenario: A listing finer than the ledger can count is refused with a reason
    Given the asset ETH with 18 decimals
    Then listing ETH-USD at a tick of 0.000000001 USD and a lot of 0.000000000001 ETH is refused with BAD_USER_INPUT: "finer than this market can count"
    And listing ETH-USD at a tick of 0.01 USD and a lot of 0.0000000000000000001 ETH is refused with BAD_USER_INPUT: "lotSize has more than 18 decimal places"
