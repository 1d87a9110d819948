Feature: Candles and tickers
  Charts and 24-hour tickers come from the settled trades: every minute,
  hour, day and week in which a market traded has a candle (open, high, low,
  close, volume), the candle in progress included, and a rolling ticker sums
  the last 24 hours. The same figures come over GraphQL, over REST in the
  shape exchanges use, over subscriptions, and after a crash.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC
    And carol has an account
    And bob places a limit sell order for 0.5 BTC at 100 USD

  Scenario: Three trades make the candles of every interval
    Then the market BTC-USD has no candles yet
    When alice places a limit buy order for 0.1 BTC at 100 USD
    And bob places a limit sell order for 0.2 BTC at 98 USD
    And alice places a limit buy order for 0.2 BTC at 101 USD
    And alice places a limit buy order for 0.1 BTC at 100 USD
    Then the candles of BTC-USD at every interval hold 3 trades of 0.4 BTC for 39.6 USD, opening at 100, between 98 and 100, closing at 100 USD
    And the REST candles of BTC-USD at 1m hold 0.4 BTC, opening at 100, between 98 and 100, closing at 100 USD
    And no money was created or destroyed

  Scenario: The ticker sums the last 24 hours, over GraphQL and REST
    When alice places a limit buy order for 0.1 BTC at 100 USD
    And bob places a limit sell order for 0.2 BTC at 98 USD
    And alice places a limit buy order for 0.2 BTC at 101 USD
    And alice places a limit buy order for 0.1 BTC at 100 USD
    Then the ticker of BTC-USD reads last price 100, open 100, high 100, low 98, change 0 (0%), volume 0.4 BTC, quote volume 39.6 USD, VWAP 99, 3 trades, no best bid and best ask 100
    And the REST ticker of BTC-USD reads the same
    And the REST order book of BTC-USD has asks of 0.3 BTC at 100 USD

  Scenario: Subscriptions send the candle in progress and the ticker as they change
    Given carol subscribes to the ONE_MINUTE candles of BTC-USD
    And carol subscribes to the ticker of BTC-USD
    Then carol receives a ticker without a last price
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then carol receives a candle closing at 100 USD
    And carol receives a ticker with the last price 100 USD
    When bob places a limit sell order for 0.2 BTC at 98 USD
    And alice places a limit buy order for 0.2 BTC at 101 USD
    Then carol receives a candle closing at 98 USD
    And carol receives a ticker with the last price 98 USD

  Scenario: Candles are the same after every daemon is killed
    Given alice places a limit buy order for 0.1 BTC at 100 USD
    And bob places a limit sell order for 0.2 BTC at 98 USD
    And alice places a limit buy order for 0.2 BTC at 101 USD
    When carol reads the candles of BTC-USD at every interval
    And all three daemons are killed (kill -9) and start again
    Then the candles of BTC-USD at every interval are the ones carol read
    And no money was created or destroyed
