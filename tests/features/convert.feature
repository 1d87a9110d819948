Feature: Convert: a swap platform for fiat and digital assets
  Users who do not want an order book ask for a price, see it for a few
  seconds, and accept it or not. The house is the counterparty: it gives
  from its inventory, which operators fund, and keeps the spread and the
  fee as revenue. A quote is firm until it expires by the ledger's clock,
  and is accepted at most once.

  Background:
    Given a running Marionette with the market BTC-USD
    And the operator funds the house with 1 BTC with the reference "inventory-btc"
    And the operator funds the house with 100000 USD with the reference "inventory-usd"
    And the operators list the conversion pair BTC/USD at 50000 USD a unit, in steps of 0.00000001 BTC, with a spread of 50 bps and a fee of 10 bps

  Scenario: A user asks for a quote and accepts it in time
    Given alice has an account with 1000 USD
    When alice asks for a quote of 500 USD in BTC
    Then alice's quote gives 0.00994005 BTC for 500.00 USD with a fee of 0.00000995 BTC
    And alice's quote expires 10 seconds after it was made
    And the house has 0.01 BTC set aside for quotes
    When alice accepts her quote
    Then alice has 500.00 USD available and 0.00 USD locked
    And alice has 0.00994005 BTC available and 0.00000000 BTC locked
    And the house has 0.99000000 BTC of inventory and 0.00005995 BTC of revenue
    And the house has 100500.00 USD of inventory and 0.00 USD of revenue
    And the house has 0 BTC set aside for quotes
    And alice has made 1 conversion, of 500.00 USD into 0.00994005 BTC
    And the operators see the house's position through BTC/USD at -0.01000000 BTC and 500.00 USD
    And no money was created or destroyed

  Scenario: A quote accepted after it expired is refused and its inventory freed
    Given the operators make the quotes of BTC/USD hold 5 seconds
    And alice has an account with 1000 USD
    When alice asks for a quote of 500 USD in BTC
    And 6 seconds pass
    And alice accepts her quote
    Then the request is refused with QUOTE_EXPIRED
    And alice has 1000.00 USD available and 0.00 USD locked
    And alice has no BTC
    And the house has 0 BTC set aside for quotes
    And the house has 1.00000000 BTC of inventory and 0.00000000 BTC of revenue
    And no money was created or destroyed

  Scenario: A second accept of the same quote changes nothing
    Given alice has an account with 1000 USD
    When alice asks for a quote of 500 USD in BTC
    And alice accepts her quote
    And alice accepts her quote again
    Then the accept answers the same conversion
    When alice accepts her quote with a new key
    Then the request is refused with DUPLICATE
    And alice has 500.00 USD available and 0.00 USD locked
    And alice has 0.00994005 BTC available and 0.00000000 BTC locked
    And alice has made 1 conversion, of 500.00 USD into 0.00994005 BTC
    And no money was created or destroyed

  Scenario: A quote the user's balance does not cover is refused
    Given alice has an account with 100 USD
    When alice asks for a quote of 500 USD in BTC
    Then the request is refused with INSUFFICIENT_FUNDS
    And the house has 0 BTC set aside for quotes
    And alice has 100.00 USD available and 0.00 USD locked

  Scenario: A quote the house's inventory cannot cover is refused
    Given alice has an account with 100000 USD
    When alice asks for a quote of 60000 USD in BTC
    Then the request is refused with INSUFFICIENT_LIQUIDITY
    And the house has 0 BTC set aside for quotes
    When alice asks for a quote of 40000 USD in BTC
    Then alice's quote gives 0.79520400 BTC for 40000.00 USD with a fee of 0.00079600 BTC

  Scenario: Fiat converts to a digital asset through an intermediate asset
    Given the asset EUR with 2 decimals
    And the operator funds the house with 5000 EUR with the reference "inventory-eur"
    And the operators list the conversion pair EUR/USD at 1.10 USD a unit, in steps of 0.01 EUR, with a spread of 0 bps and a fee of 0 bps
    And alice has an account with 1000 EUR
    When alice asks for a quote of 500 EUR in BTC
    Then alice's quote gives 0.01093405 BTC for 500.00 EUR with a fee of 0.00001095 BTC through USD
    When alice accepts her quote
    Then alice has 500.00 EUR available and 0.00 EUR locked
    And alice has 0.01093405 BTC available and 0.00000000 BTC locked
    And alice has no USD
    And the house has 5500.00 EUR of inventory and 0.00 EUR of revenue
    And the house has 100000.00 USD of inventory and 0.00 USD of revenue
    And no money was created or destroyed

  Scenario: A user asks for exactly what she wants to receive
    Given alice has an account with 1000 USD
    When alice asks how much USD buys 0.01 BTC
    Then alice's quote gives 0.01000000 BTC for 503.02 USD with a fee of 0.00001002 BTC
    When alice accepts her quote
    Then alice has 496.98 USD available and 0.00 USD locked
    And alice has 0.01000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: A pair priced from the order book walks it for the size
    Given bob has an account with 1 BTC
    And bob places a limit sell order for 0.1 BTC at 40000 USD
    And bob places a limit sell order for 0.1 BTC at 41000 USD
    And the operators list the conversion pair BTC/USD priced from the book of BTC-USD, in steps of 0.00000001 BTC, with a spread of 0 bps and a fee of 0 bps
    And alice has an account with 10000 USD
    When alice asks for a quote of 6050 USD in BTC
    Then alice's quote gives 0.15000000 BTC for 6050.00 USD with a fee of 0.00000000 BTC
    When alice asks for a quote of 9000 USD in BTC
    Then the request is refused with INSUFFICIENT_LIQUIDITY

  Scenario: A paused pair gives no quotes
    Given alice has an account with 1000 USD
    When the operators pause the pair BTC/USD
    And alice asks for a quote of 500 USD in BTC
    Then the request is refused with MARKET_CLOSED
    When the operators resume the pair BTC/USD
    And alice asks for a quote of 500 USD in BTC
    Then alice's quote gives 0.00994005 BTC for 500.00 USD with a fee of 0.00000995 BTC
