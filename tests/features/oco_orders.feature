Feature: OCO lists
  One-cancels-the-other: a trader places a limit order that rests and a
  stop-loss for the same quantity, so that they take profit or cut the loss
  whichever comes first. Any fill of the limit order cancels the stop, the
  stop firing cancels the limit order, and cancelling either cancels both.
  One hold covers the list, since only one of its orders can trade.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 1 BTC
    And carol has an account with 1 BTC
    And bob has an account with 10000 USD
    And dave has an account with 10000 USD
    And carol places a limit sell order for 0.1 BTC at 100 USD
    And dave places a limit buy order for 0.1 BTC at 100 USD

  Scenario: A fill of the limit order cancels the stop
    When alice places an OCO sell order for 0.5 BTC at 110 USD with a stop-loss limit at 94 USD triggered at 95 USD
    Then alice's OCO limit order is OPEN with 0 BTC filled
    And alice's OCO stop is OPEN with 0 BTC filled
    And alice has 0.50000000 BTC available and 0.50000000 BTC locked
    When bob places a limit buy order for 0.2 BTC at 110 USD
    Then alice's OCO limit order is PARTIALLY_FILLED with 0.2 BTC filled
    And alice's OCO stop is CANCELLED with 0 BTC filled
    And alice has 0.50000000 BTC available and 0.30000000 BTC locked
    Given dave places a limit buy order for 0.1 BTC at 95 USD
    When carol places a limit sell order for 0.1 BTC at 95 USD
    Then alice's OCO limit order is PARTIALLY_FILLED with 0.2 BTC filled
    And the order book of BTC-USD has asks of 0.3 BTC at 110 USD
    And no money was created or destroyed

  Scenario: The stop firing cancels the limit order
    When alice places an OCO sell order for 0.5 BTC at 110 USD with a stop-loss limit at 94 USD triggered at 95 USD
    Given bob places a limit buy order for 0.5 BTC at 94 USD
    And dave places a limit buy order for 0.1 BTC at 95 USD
    When carol places a limit sell order for 0.1 BTC at 95 USD
    Then alice's OCO stop is FILLED with 0.5 BTC filled
    And alice's OCO limit order is CANCELLED with 0 BTC filled
    And alice has 0.50000000 BTC available and 0.00000000 BTC locked
    And the order book of BTC-USD has no asks
    And no money was created or destroyed

  Scenario: Cancelling one order cancels the list
    When alice places an OCO sell order for 0.5 BTC at 110 USD with a stop-loss limit at 94 USD triggered at 95 USD
    And alice cancels her OCO stop
    Then alice's OCO limit order is CANCELLED with 0 BTC filled
    And alice's OCO stop is CANCELLED with 0 BTC filled
    And alice has 1.00000000 BTC available and 0.00000000 BTC locked
    And the order book of BTC-USD has no asks

  Scenario: A list whose limit order would trade at once is refused whole
    Given bob places a limit buy order for 0.5 BTC at 105 USD
    When alice places an OCO sell order for 0.5 BTC at 104 USD with a stop-loss limit at 94 USD triggered at 95 USD
    Then the request is refused with POST_ONLY_WOULD_TAKE
    And alice has 1.00000000 BTC available and 0.00000000 BTC locked

  Scenario: An OCO list survives a kill -9 of every daemon
    When alice places an OCO sell order for 0.5 BTC at 110 USD with a stop-loss limit at 94 USD triggered at 95 USD
    And all three daemons are killed (kill -9) and start again
    Then alice's OCO stop is OPEN with 0 BTC filled
    And alice has 0.50000000 BTC available and 0.50000000 BTC locked
    When bob places a limit buy order for 0.2 BTC at 110 USD
    Then alice's OCO limit order is PARTIALLY_FILLED with 0.2 BTC filled
    And alice's OCO stop is CANCELLED with 0 BTC filled
    And no money was created or destroyed
