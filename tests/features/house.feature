Feature: The house: the platform's own accounts
  The platform keeps accounts of its own per asset: revenue, where the fees
  of every trade go, and inventory, which operators fund from custody for
  the house to trade with and can take back out. Only operators see or move
  them.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: The operator funds the house, once per reference, and takes part back
    When the operator funds the house with 5000 USD with the reference "treasury-1"
    And the operator funds the house with 5000 USD with the reference "treasury-1"
    Then the house has 5000.00 USD of inventory and 0.00 USD of revenue
    When the operator takes out of the house's inventory 1500 USD with the reference "back-1"
    Then the house has 3500.00 USD of inventory and 0.00 USD of revenue
    And no money was created or destroyed

  Scenario: The house cannot give out more than its inventory
    When the operator funds the house with 100 USD with the reference "treasury-2"
    And the operator takes out of the house's inventory 100.01 USD with the reference "back-2"
    Then the request is refused with INSUFFICIENT_FUNDS
    And the house has 100.00 USD of inventory and 0.00 USD of revenue

  Scenario: The fees of a trade are the house's revenue
    Given alice has an account with 10000 USD
    And bob has an account with 1 BTC
    When bob places a limit sell order for 0.5 BTC at 100 USD
    And alice places a limit buy order for 0.3 BTC at 100 USD
    Then the house has 0.00 USD of inventory and 0.09 USD of revenue
    And no money was created or destroyed

  Scenario: A user can neither fund the house nor see it
    Given alice has an account with 100 USD
    When alice funds the house with 100 USD with the reference "mine"
    Then the request is refused with FORBIDDEN
