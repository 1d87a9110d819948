Feature: Good-till-date orders
  A GTD limit order rests until its expiry time, by the ledger's clock:
  then the ledger cancels what is left of it, it ends EXPIRED and its hold
  comes back. The ledger journals the expiry as its own command, so a
  restart or a replay expires the same orders, and one placed before a
  kill -9 of every daemon still expires after it.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC

  Scenario: A GTD order partly fills, then expires and releases the rest of its hold
    Given alice places a limit buy order for 0.3 BTC at 100 USD good for 3 seconds
    And bob places a limit sell order for 0.1 BTC at 100 USD
    Then alice's order is PARTIALLY_FILLED with 0.1 BTC filled
    And alice's order is EXPIRED with 0.1 BTC filled
    And alice has 9989.99 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A GTD order placed before every daemon is killed expires after they start again
    Given alice places a limit buy order for 0.1 BTC at 100 USD good for 3 seconds
    When all three daemons are killed (kill -9) and start again
    Then alice's order is EXPIRED with 0 BTC filled
    And alice has 10000.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: An expiry time already past is refused
    When alice places a limit buy order for 0.1 BTC at 100 USD good for -5 seconds
    Then the request is refused with BAD_USER_INPUT
    And alice has 10000.00 USD available and 0.00 USD locked
