Feature: Wallet: deposits and withdrawals
  The operator credits deposits to a user's wallet. A user asks to withdraw;
  the funds leave her available balance at once, and the operator approves
  the withdrawal (the funds leave custody) or rejects it (they come back).

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: The operator deposits, once per reference
    Given alice has an account
    When the operator deposits 1000 USD into alice's wallet with the reference "wire-1"
    And the operator deposits 1000 USD into alice's wallet with the reference "wire-1"
    Then alice has 1000.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A withdrawal is requested and approved
    Given alice has an account with 1000 USD
    When alice requests a withdrawal of 400 USD to "DE89 3704 0044 0532 0130 00"
    Then the withdrawal is PENDING
    And alice has 600.00 USD available and 0.00 USD locked
    When the operator approves the withdrawal
    Then the withdrawal is APPROVED
    And alice has 600.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A rejected withdrawal gives the funds back
    Given alice has an account with 1000 USD
    When alice requests a withdrawal of 400 USD to "DE89 3704 0044 0532 0130 00"
    And the operator rejects the withdrawal
    Then the withdrawal is REJECTED
    And alice has 1000.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A withdrawal larger than the balance is refused
    Given alice has an account with 1000 USD
    When alice requests a withdrawal of 1000.01 USD to "DE89 3704 0044 0532 0130 00"
    Then the request is refused with INSUFFICIENT_FUNDS
    And alice has 1000.00 USD available and 0.00 USD locked
