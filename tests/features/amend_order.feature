Feature: Amending orders
  A trader changes a resting order's price or quantity without cancelling
  it. A smaller quantity at the same price keeps the order's place in the
  queue; a new price loses it: the order re-enters behind the orders at its
  new price, and may trade at once. The quantity is the order's new total,
  what has filled included, so fills already on their way are never
  reopened, and a total at or below them cancels the rest. The hold follows
  the new terms; an amend matching refuses changes nothing.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 1 BTC
    And carol has an account with 1 BTC
    And bob has an account with 10000 USD

  Scenario: A smaller quantity keeps the order's place in the queue
    Given alice places a limit sell order for 0.5 BTC at 100 USD
    And carol places a limit sell order for 0.5 BTC at 100 USD
    When alice amends her order to 0.2 BTC
    Then alice's order is for 0.2 BTC at 100 USD
    And alice has 0.80000000 BTC available and 0.20000000 BTC locked
    And the order book of BTC-USD has asks of 0.7 BTC at 100 USD
    When bob places a limit buy order for 0.1 BTC at 100 USD
    Then alice's order is PARTIALLY_FILLED with 0.1 BTC filled
    And carol's order is OPEN with 0 BTC filled
    And no money was created or destroyed

  Scenario: A new price loses the order's place in the queue
    Given alice places a limit sell order for 0.5 BTC at 101 USD
    And carol places a limit sell order for 0.5 BTC at 100 USD
    When alice amends her order to 100 USD
    Then alice's order is for 0.5 BTC at 100 USD
    And the order book of BTC-USD has asks of 1 BTC at 100 USD
    When bob places a limit buy order for 0.1 BTC at 100 USD
    Then carol's order is PARTIALLY_FILLED with 0.1 BTC filled
    And alice's order is OPEN with 0 BTC filled
    And no money was created or destroyed

  Scenario: A buy amended to a crossing price is held for it and trades at once
    Given bob places a limit buy order for 0.1 BTC at 90 USD
    And alice places a limit sell order for 0.1 BTC at 100 USD
    When bob amends his order to 100 USD
    Then bob's order is FILLED with 0.1 BTC filled
    And bob has 9989.98 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A quantity at or below what has filled cancels the rest
    Given alice places a limit sell order for 0.5 BTC at 100 USD
    And bob places a limit buy order for 0.2 BTC at 100 USD
    When alice amends her order to 0.2 BTC
    Then alice's order is CANCELLED with 0.2 BTC filled
    And alice has 0.80000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: An amend matching refuses leaves the order and its hold as they were
    Given alice places a post-only limit sell order for 0.1 BTC at 101 USD
    And bob places a limit buy order for 0.1 BTC at 100 USD
    When alice amends her order to 100 USD
    Then the request is refused with POST_ONLY_WOULD_TAKE
    And alice's order is OPEN with 0 BTC filled
    And alice has 0.90000000 BTC available and 0.10000000 BTC locked
    When bob cancels his order
    And bob amends his order to 0.2 BTC
    Then the request is refused with NOT_FOUND

  Scenario: An amend survives a kill -9 of every daemon
    Given alice places a limit sell order for 0.5 BTC at 100 USD
    And carol places a limit sell order for 0.5 BTC at 100 USD
    When alice amends her order to 0.2 BTC
    And all three daemons are killed (kill -9) and start again
    Then alice's order is for 0.2 BTC at 100 USD
    And alice has 0.80000000 BTC available and 0.20000000 BTC locked
    And the order book of BTC-USD has asks of 0.7 BTC at 100 USD
    When bob places a limit buy order for 0.1 BTC at 100 USD
    Then alice's order is PARTIALLY_FILLED with 0.1 BTC filled
    And no money was created or destroyed
