Feature: Price bands
  A market listed with a price band refuses a limit order priced too far
  from its last trade (before its first trade, from the best opposite
  price) with PRICE_OUT_OF_BAND and holds nothing for it, so a fat finger
  cannot print a trade far from the market. The band measures from the
  same last trade after a kill -9 of every daemon.

  Background:
    Given a running Marionette with the market BTC-USD and a price band of 10%
    And alice has an account with 10000 USD
    And bob has an account with 10 BTC

  Scenario: Before any trade the band is measured from the best opposite price
    Given bob places a limit sell order for 1 BTC at 100 USD
    When alice places a limit buy order for 1 BTC at 111 USD
    Then the request is refused with PRICE_OUT_OF_BAND
    And alice has 10000.00 USD available and 0.00 USD locked
    When alice places a limit buy order for 0.5 BTC at 110 USD
    Then the order is FILLED with 0.5 BTC filled at an average price of 100 USD
    And the market BTC-USD has a price band of 0.1
    And no money was created or destroyed

  Scenario: After a trade the band is measured from the last trade, across a restart
    Given bob places a limit sell order for 1 BTC at 100 USD
    And alice places a limit buy order for 1 BTC at 100 USD
    When all three daemons are killed (kill -9) and start again
    And bob places a limit sell order for 1 BTC at 89 USD
    Then the request is refused with PRICE_OUT_OF_BAND
    And bob has 9.00000000 BTC available and 0.00000000 BTC locked
    When bob places a limit sell order for 1 BTC at 90 USD
    Then the order is OPEN with 0 BTC filled
    When alice places a limit buy order for 1 BTC at 111 USD
    Then the request is refused with PRICE_OUT_OF_BAND
    And no money was created or destroyed
