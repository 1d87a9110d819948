Feature: Trading on the order book
  Users place orders on the BTC-USD market (tick 1 USD, lot 0.01 BTC, maker
  fee 0.1%, taker fee 0.2%). An order holds what it may spend; a trade moves
  both sides' funds and pays the fees; whatever is not used is released.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC

  Scenario: Crossing limit orders trade at the resting order's price
    When bob places a limit sell order for 0.5 BTC at 100 USD
    Then the order is OPEN
    When alice places a limit buy order for 0.3 BTC at 101 USD
    Then the order is FILLED with 0.3 BTC filled at an average price of 100 USD
    And the latest trade of BTC-USD is 0.3 BTC at 100 USD, taken by a buyer
    And alice paid a fee of 0.06 USD
    And bob paid a fee of 0.03 USD
    And alice has 0.30000000 BTC available and 0.00000000 BTC locked
    And alice has 9969.94 USD available and 0.00 USD locked
    And bob has 0.50000000 BTC available and 0.20000000 BTC locked
    And bob has 29.97 USD available and 0.00 USD locked
    And bob's order is PARTIALLY_FILLED with 0.3 BTC filled
    And no money was created or destroyed

  Scenario: Cancelling an order releases its hold
    When bob places a limit sell order for 0.5 BTC at 100 USD
    Then bob has 0.50000000 BTC available and 0.50000000 BTC locked
    When bob cancels his order
    Then the order is CANCELLED with 0 BTC filled
    And bob has 1.00000000 BTC available and 0.00000000 BTC locked
    And the order book of BTC-USD has no asks
    And no money was created or destroyed

  Scenario: An order the balance cannot cover is refused
    When alice places a limit buy order for 1 BTC at 100000 USD
    Then the request is refused with INSUFFICIENT_FUNDS
    And alice has 10000.00 USD available and 0.00 USD locked

  Scenario: An immediate-or-cancel order fills what it can and cancels the rest
    Given bob places a limit sell order for 0.2 BTC at 100 USD
    When alice places an IOC limit buy order for 0.5 BTC at 100 USD
    Then the order is CANCELLED with 0.2 BTC filled
    And alice has 0.20000000 BTC available and 0.00000000 BTC locked
    And alice has 9979.96 USD available and 0.00 USD locked
    And the order book of BTC-USD has no bids
    And no money was created or destroyed

  Scenario: A fill-or-kill order that cannot fill completely does not trade at all
    Given bob places a limit sell order for 0.2 BTC at 100 USD
    When alice places a FOK limit buy order for 0.5 BTC at 100 USD
    Then the order is CANCELLED with 0 BTC filled
    And the order book of BTC-USD has asks of 0.2 BTC at 100 USD
    And alice has 10000.00 USD available and 0.00 USD locked

  Scenario: A fill-or-kill order that can fill completely does
    Given bob places a limit sell order for 0.2 BTC at 100 USD
    When alice places a FOK limit buy order for 0.2 BTC at 100 USD
    Then the order is FILLED with 0.2 BTC filled at an average price of 100 USD

  Scenario: A post-only order that would take liquidity is refused
    Given bob places a limit sell order for 0.2 BTC at 100 USD
    When alice places a post-only limit buy order for 0.1 BTC at 100 USD
    Then the request is refused with POST_ONLY_WOULD_TAKE
    And alice has 10000.00 USD available and 0.00 USD locked
    When alice places a post-only limit buy order for 0.1 BTC at 99 USD
    Then the order is OPEN
    And the order book of BTC-USD has bids of 0.1 BTC at 99 USD

  Scenario: A market order takes the best prices, up to its protection price
    Given bob places a limit sell order for 0.2 BTC at 100 USD
    And bob places a limit sell order for 0.2 BTC at 105 USD
    And bob places a limit sell order for 0.2 BTC at 120 USD
    When alice places a market buy order for 0.6 BTC with a protection price of 110 USD
    Then the order is CANCELLED with 0.4 BTC filled at an average price of 102.5 USD
    And the order book of BTC-USD has asks of 0.2 BTC at 120 USD
    And alice has 0.40000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: Another user cannot see my order
    Given bob places a limit sell order for 0.5 BTC at 100 USD
    Then bob can see his order
    And alice cannot see bob's order
    And alice cannot cancel bob's order
    And bob's order is OPEN with 0 BTC filled

  Scenario: A trader cancels all of her open orders at once
    Given alice places a limit buy order for 0.1 BTC at 90 USD
    And alice places a limit buy order for 0.2 BTC at 95 USD
    And bob places a limit sell order for 0.5 BTC at 120 USD
    When alice cancels all of her orders in BTC-USD
    Then 2 orders were cancelled
    And alice has 10000.00 USD available and 0.00 USD locked
    And bob's order is OPEN with 0 BTC filled
    And no money was created or destroyed
