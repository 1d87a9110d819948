Feature: Kill switches
  A trader, or their bot, stops all of their trading at once with their
  kill switch: their open orders are cancelled and new ones refused until
  they lift it. The operators hold a kill switch of their own on any
  user's trading, under the four-eyes rules for account actions, and the
  user cannot lift that one. Both survive a kill -9 of every daemon.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1000 USD
    And alice places a limit buy order for 0.1 BTC at 100 USD
    And bob places a limit buy order for 0.1 BTC at 99 USD

  Scenario: A trader engages her own kill switch and lifts it
    Given alice places a limit buy order for 0.2 BTC at 90 USD
    When alice engages her kill switch
    Then it cancelled 2 open orders
    And alice has 10000.00 USD available and 0.00 USD locked
    And bob's order is OPEN with 0 BTC filled
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the request is refused with KILL_SWITCH_ENGAGED
    When all three daemons are killed (kill -9) and start again
    Then alice's kill switch is engaged by herself
    When alice lifts her kill switch
    Then alice's kill switch is not engaged
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the order is OPEN with 0 BTC filled
    And no money was created or destroyed

  Scenario: A bot pulls its owner's kill switch with its TRADE key, but only a login lifts it
    Given alice creates an HMAC API key "market maker" with the scopes READ, TRADE
    When her bot engages her kill switch with the Python client
    Then it cancelled 1 open order
    When her bot places a limit buy order for 0.1 BTC at 100 USD with the Python client
    Then the request is refused with KILL_SWITCH_ENGAGED
    When her bot lifts her kill switch with the Python client
    Then the request is refused with FORBIDDEN
    And alice's kill switch is engaged by herself
    And alice has 10000.00 USD available and 0.00 USD locked

  Scenario: Two operators engage a user's kill switch; only operators lift it
    When the operator proposes to engage alice's kill switch
    Then alice's order is OPEN with 0 BTC filled
    When the approver approves the proposal
    Then alice's order is CANCELLED with 0 BTC filled
    And alice's kill switch is engaged by the operators
    And bob's order is OPEN with 0 BTC filled
    When alice lifts her kill switch
    Then alice's kill switch is engaged by the operators
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the request is refused with KILL_SWITCH_ENGAGED
    When the operator proposes to lift alice's kill switch
    And the approver approves the proposal
    Then alice's kill switch is not engaged
    When alice places a limit buy order for 0.1 BTC at 100 USD
    Then the order is OPEN with 0 BTC filled
    And no money was created or destroyed
