Feature: Market data subscriptions
  Over a WebSocket (graphql-transport-ws), a client follows the order book and
  the trades of a market, and a user follows her own orders: each
  subscription sends what is there now, then every change.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC
    And carol has an account

  Scenario: The order book subscription sends the book, then each change
    Given carol subscribes to the order book of BTC-USD
    Then carol receives an order book with no bids and no asks
    When bob places a limit sell order for 0.5 BTC at 100 USD
    Then carol receives an order book with asks of 0.5 BTC at 100 USD
    When alice places a limit buy order for 0.2 BTC at 100 USD
    Then carol receives an order book with asks of 0.3 BTC at 100 USD
    When bob cancels his order
    Then carol receives an order book with no bids and no asks

  Scenario: The trades subscription sends the latest trades, then each new one
    Given bob places a limit sell order for 0.5 BTC at 90 USD
    And alice places a limit buy order for 0.1 BTC at 90 USD
    When carol subscribes to the trades of BTC-USD
    Then carol receives a trade of 0.1 BTC at 90 USD, taken by a buyer
    When alice places a limit buy order for 0.2 BTC at 95 USD
    Then carol receives a trade of 0.2 BTC at 90 USD, taken by a buyer

  Scenario: A user follows her own orders and no one else's
    Given bob subscribes to his orders
    When alice places a limit buy order for 0.1 BTC at 80 USD
    And bob places a limit sell order for 0.3 BTC at 100 USD
    Then bob receives his order OPEN with 0 BTC filled
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then bob receives his order PARTIALLY_FILLED with 0.1 BTC filled

  Scenario: Following one's orders needs a valid token
    When a client without a valid token subscribes to its orders
    Then the subscription is refused with UNAUTHENTICATED
