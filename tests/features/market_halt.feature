Feature: Halting a market
  Operators halt a market under the four-eyes rules for markets: while it
  is halted no new order is taken (MARKET_CLOSED) and nothing is held for
  one, but users may still cancel; resuming it, under the same rules, lets
  orders in again. The books and the halt survive a restart.

  Background:
    Given a running Marionette with the market BTC-USD, whose market actions need two operators
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC
    And bob places a limit sell order for 0.5 BTC at 100 USD

  Scenario: Two operators halt a market; orders are refused, cancels are not
    When the operator proposes to halt BTC-USD
    Then the market BTC-USD is trading
    When the approver approves the proposal
    Then the market BTC-USD is halted
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the request is refused with MARKET_CLOSED
    And alice has 10000.00 USD available and 0.00 USD locked
    When all three daemons are killed (kill -9) and start again
    Then the market BTC-USD is halted
    When bob cancels his order
    Then the order is CANCELLED with 0 BTC filled
    And bob has 1.00000000 BTC available and 0.00000000 BTC locked
    And no money was created or destroyed

  Scenario: Two operators resume a halted market
    Given the operator proposes to halt BTC-USD
    And the approver approves the proposal
    When the operator proposes to resume BTC-USD
    And the approver approves the proposal
    Then the market BTC-USD is trading
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the order is FILLED with 0.1 BTC filled at an average price of 100 USD
    And no money was created or destroyed
