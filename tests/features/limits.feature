Feature: Verification tiers and withdrawal limits
  Each user has a verification tier, set by two operators, with rolling
  24 hour and 30 day withdrawal limits in a reference asset (USD here:
  "unverified" allows 500 a day and 1000 in 30 days, "verified" 5000 and
  20000). Other assets count at their market's last trade price. A
  withdrawal over a limit is not refused: it waits for an operator's review.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: A withdrawal over the daily limit waits for review, and a higher tier raises the limits
    Given alice has an account with 2000 USD
    Then alice is at tier 0 "unverified", with 500 USD a day of which 0 used and 1000 USD in 30 days of which 0 used
    When alice requests a withdrawal of 400 USD to "DE89 3704 0044 0532 0130 00"
    Then the withdrawal does not wait for an operator's review
    When alice requests a withdrawal of 200 USD to "DE89 3704 0044 0532 0130 00"
    Then the withdrawal is PENDING
    And the withdrawal waits for an operator's review
    And alice is at tier 0 "unverified", with 500 USD a day of which 600 used and 1000 USD in 30 days of which 600 used
    And alice has 1400.00 USD available and 0.00 USD locked
    When the operator approves the withdrawal
    Then the withdrawal is APPROVED
    And the operators' proposal to approve it said it was under review
    When the operator proposes tier 1 for alice
    And the approver approves the proposal
    And all three daemons are killed (kill -9) and start again
    Then alice is at tier 1 "verified", with 5000 USD a day of which 600 used and 20000 USD in 30 days of which 600 used
    And no money was created or destroyed

  Scenario: A withdrawal of another asset counts at its market's last trade price
    Given bob has an account with 3 BTC
    And alice has an account with 1000 USD
    And bob places a limit sell order for 1 BTC at 300 USD
    And alice places a limit buy order for 1 BTC at 300 USD
    When bob requests a withdrawal of 1 BTC to "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    Then the withdrawal does not wait for an operator's review
    And bob is at tier 0 "unverified", with 500 USD a day of which 300 used and 1000 USD in 30 days of which 300 used
    When bob requests a withdrawal of 0.7 BTC to "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    Then the withdrawal waits for an operator's review
