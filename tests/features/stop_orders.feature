Feature: Stop and take-profit orders
  A trader leaves an order that waits for the market: a stop-loss sells
  when the last trade falls to its trigger price (a buy when it rises to
  it), a take-profit the other way round. Each is a market order or a
  limit order once it fires. Its money is held when it is placed, so it
  can always settle; it waits in matching, off the book, through any
  restart, and fires in the order of the trades that reach it.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 1 BTC
    And carol has an account with 1 BTC
    And bob has an account with 10000 USD
    And dave has an account with 10000 USD
    And carol places a limit sell order for 0.1 BTC at 100 USD
    And dave places a limit buy order for 0.1 BTC at 100 USD

  Scenario: A stop-loss sells when a trade reaches its trigger
    When alice places a stop-loss sell order for 0.5 BTC triggered at 95 USD
    Then alice's order is an armed STOP_LOSS order waiting for 95 USD
    And alice has 0.50000000 BTC available and 0.50000000 BTC locked
    And the order book of BTC-USD has no asks
    Given bob places a limit buy order for 0.5 BTC at 94 USD
    And dave places a limit buy order for 0.1 BTC at 96 USD
    When carol places a limit sell order for 0.1 BTC at 96 USD
    Then alice's order is an armed STOP_LOSS order waiting for 95 USD
    Given dave places a limit buy order for 0.1 BTC at 95 USD
    When carol places a limit sell order for 0.1 BTC at 95 USD
    Then alice's order is FILLED with 0.5 BTC filled
    And alice's stop has fired
    And bob's order is FILLED with 0.5 BTC filled
    And alice has 0.50000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: A take-profit limit sell rests at its price once the market rises to it
    When alice places a take-profit limit sell order for 0.3 BTC at 110 USD triggered at 108 USD
    Then alice's order is an armed TAKE_PROFIT_LIMIT order waiting for 108 USD
    Given carol places a limit sell order for 0.1 BTC at 108 USD
    When dave places a limit buy order for 0.1 BTC at 108 USD
    Then alice's order is OPEN with 0 BTC filled
    And alice's stop has fired
    And the order book of BTC-USD has asks of 0.3 BTC at 110 USD
    When bob places a limit buy order for 0.3 BTC at 110 USD
    Then alice's order is FILLED with 0.3 BTC filled
    And no money was created or destroyed

  Scenario: A stop-loss buy is held at its protection price and buys when the price rises
    When bob places a stop-loss buy order for 0.2 BTC with a protection price of 106 USD triggered at 104 USD
    Then bob's order is an armed STOP_LOSS order waiting for 104 USD
    And bob has 9978.74 USD available and 21.26 USD locked
    Given alice places a limit sell order for 0.5 BTC at 105 USD
    And carol places a limit sell order for 0.1 BTC at 104 USD
    When dave places a limit buy order for 0.1 BTC at 104 USD
    Then bob's order is FILLED with 0.2 BTC filled
    And bob has 0.20000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: A stop the last trade already reaches is refused
    When alice places a stop-loss sell order for 0.5 BTC triggered at 101 USD
    Then the request is refused with WOULD_TRIGGER_NOW
    And alice has 1.00000000 BTC available and 0.00000000 BTC locked

  Scenario: A stop needs its trigger price
    When alice places a stop-loss limit sell order for 0.5 BTC at 90 USD without a trigger price
    Then the request is refused with BAD_USER_INPUT

  Scenario: Cancelling an armed stop gives back its hold
    Given alice places a stop-loss limit sell order for 0.5 BTC at 94 USD triggered at 95 USD
    When alice cancels her order
    Then alice's order is CANCELLED with 0 BTC filled
    And alice has 1.00000000 BTC available and 0.00000000 BTC locked
    When carol places a limit sell order for 0.1 BTC at 95 USD
    And dave places a limit buy order for 0.1 BTC at 95 USD
    Then alice has 1.00000000 BTC available and 0.00000000 BTC locked

  Scenario: An armed stop survives a kill -9 of every daemon and fires after it
    Given alice places a stop-loss limit sell order for 0.5 BTC at 94 USD triggered at 95 USD
    When all three daemons are killed (kill -9) and start again
    Then alice's order is an armed STOP_LOSS_LIMIT order waiting for 95 USD
    And alice has 0.50000000 BTC available and 0.50000000 BTC locked
    Given bob places a limit buy order for 0.2 BTC at 94 USD
    And carol places a limit sell order for 0.1 BTC at 95 USD
    When dave places a limit buy order for 0.1 BTC at 95 USD
    Then alice's order is PARTIALLY_FILLED with 0.2 BTC filled
    And alice's stop has fired
    And the order book of BTC-USD has asks of 0.3 BTC at 94 USD
    And no money was created or destroyed
