Feature: Self-trade prevention, chosen per order
  A trader's own orders never trade with each other. Each order says what
  happens when it would: CANCEL_TAKER (the default) cancels the rest of the
  incoming order, CANCEL_MAKER cancels the resting order and matches on,
  CANCEL_BOTH cancels both. The order shows the mode it was placed with.

  Background:
    Given a running Marionette with the market BTC-USD
    And carol has an account with 1 BTC
    And the operator deposits 1000 USD into carol's wallet with the reference "carol-usd"
    And bob has an account with 1 BTC
    And carol places a limit sell order for 0.1 BTC at 100 USD
    And bob places a limit sell order for 0.1 BTC at 101 USD

  Scenario: By default the incoming order is cancelled and the resting one stays
    When carol places a limit buy order for 0.2 BTC at 101 USD
    Then the order is CANCELLED with 0 BTC filled
    And carol's orders are, newest first: CANCELLED CANCEL_TAKER 0, OPEN CANCEL_TAKER 0
    And the order book of BTC-USD has asks of 0.1 BTC at 100 USD, 0.1 BTC at 101 USD
    And no money was created or destroyed

  Scenario: CANCEL_MAKER cancels the resting order and the incoming one trades on
    When carol places a limit buy order for 0.2 BTC at 101 USD with self-trade prevention CANCEL_MAKER
    Then the order is PARTIALLY_FILLED with 0.1 BTC filled at an average price of 101 USD
    And carol's orders are, newest first: PARTIALLY_FILLED CANCEL_MAKER 0.1, CANCELLED CANCEL_TAKER 0
    And the latest trade of BTC-USD is 0.1 BTC at 101 USD, taken by a buyer
    And the order book of BTC-USD has bids of 0.1 BTC at 101 USD
    And the order book of BTC-USD has no asks
    And no money was created or destroyed

  Scenario: CANCEL_BOTH cancels the resting order and the incoming one
    When carol places a limit buy order for 0.2 BTC at 101 USD with self-trade prevention CANCEL_BOTH
    Then the order is CANCELLED with 0 BTC filled
    And carol's orders are, newest first: CANCELLED CANCEL_BOTH 0, CANCELLED CANCEL_TAKER 0
    And the order book of BTC-USD has asks of 0.1 BTC at 101 USD
    And carol has 1000.00 USD available and 0.00 USD locked
    And no money was created or destroyed
