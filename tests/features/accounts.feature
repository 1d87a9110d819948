Feature: Accounts and authentication
  An end-user registers with an email and a password, logs in, and receives a
  JSON Web Token. Each later request carries the token; the gateway accepts
  only tokens it signed itself, before they expire.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: A user registers and logs in
    When "user@domain.io" registers with the password "mypasswd"
    Then "user@domain.io" has the role USER
    And logging in as "user@domain.io" with the password "mypasswd" returns a token for "user@domain.io"
    And logging in as "user@domain.io" with the password "not my password" is refused with UNAUTHENTICATED
    And registering "USER@domain.io" again is refused with DUPLICATE

  Scenario Outline: A token the gateway did not issue, or issued too long ago, is refused
    Given alice has an account
    When alice presents a token <altered>
    Then the request is refused with UNAUTHENTICATED

    Examples:
      | altered                    |
      | with a forged signature    |
      | that has expired           |
      | that claims the alg "none" |

  Scenario: A user cannot act as an operator
    Given alice has an account
    When alice tries to deposit 1000 USD into her own wallet
    Then the request is refused with FORBIDDEN
    And alice has no USD
