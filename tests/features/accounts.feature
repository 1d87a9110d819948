Feature: Accounts and authentication
  An end-user registers with an email and a password, logs in, and receives a
  JSON Web Token. Each later request carries the token; the gateway accepts
  only tokens it signed itself, before they expire, while the session the
  login opened is live. A password is judged by how easily it is guessed,
  and an email is one account however it is typed or disguised.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: A user registers and logs in
    When "user@domain.io" registers with the password "violet harbor 19 engine"
    Then "user@domain.io" has the role USER
    And logging in as "user@domain.io" with the password "violet harbor 19 engine" returns a token for "user@domain.io"
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

  Scenario Outline: A password that is easy to guess is refused, whatever its length
    When "user@domain.io" registers with the password "<password>"
    Then the registration is refused with WEAK_PASSWORD

    Examples:
      | password             |
      | mypasswd             |
      | password12345678     |
      | qwertyuiopasdfgh     |
      | user@domain.io       |

  Scenario Outline: An email in disguise is no second account
    Given alice has an account
    When someone registers alice's email <disguised>
    Then the registration is refused with <code>

    Examples:
      | disguised                                | code           |
      | in capitals                              | DUPLICATE      |
      | in full-width letters                    | DUPLICATE      |
      | spelt in Cyrillic letters that look Latin | DUPLICATE      |
      | with a Cyrillic "а" for the Latin "a"    | BAD_USER_INPUT |
      | with a zero-width space inside           | BAD_USER_INPUT |

  Scenario: Logging out ends the session at once, on HTTP and on an open subscription
    Given alice has an account
    And alice subscribes to her orders
    When alice logs out
    Then alice's subscription is closed
    And alice's token is refused with UNAUTHENTICATED

  Scenario: A user sees her sessions and ends the one on another device
    Given alice has an account
    And alice logs in on another device
    Then alice has 2 sessions, one of them the one she is using
    When alice revokes her session on the other device
    Then the token of alice's other device is refused with UNAUTHENTICATED
    And alice's token is still accepted

  Scenario: A user ends every other session at once
    Given alice has an account
    And alice logs in on another device
    When alice ends her other sessions
    Then the token of alice's other device is refused with UNAUTHENTICATED
    And alice's token is still accepted

  Scenario: Changing the password ends every other session
    Given alice has an account
    And alice logs in on another device
    When alice changes her password to "granite osprey 77 meadow"
    Then the token of alice's other device is refused with UNAUTHENTICATED
    And alice's token is still accepted
    And logging in as "alice@domain.io" with her old password is refused with UNAUTHENTICATED
    And logging in as "alice@domain.io" with the password "granite osprey 77 meadow" returns a token for "alice@domain.io"

  Scenario: A two-factor code is accepted once
    Given alice has an account with two-factor authentication
    When alice logs in with her password alone
    Then the login is refused with TWO_FACTOR_REQUIRED
    When alice logs in with her password and the code her app shows next
    Then the login succeeds
    When alice logs in with her password and the same code again
    Then the login is refused with UNAUTHENTICATED
    When alice requests a withdrawal of 1 USD without a code
    Then the request is refused with TWO_FACTOR_REQUIRED

  Scenario: Enrolling shows a 160-bit secret as an otpauth URI and a QR code, and each recovery code works once
    Given alice has an account
    When alice enrols in two-factor authentication
    Then her secret has at least 160 bits and is shown as an otpauth URI and a QR code
    And alice's two-factor authentication is off
    When alice confirms with the code her app shows
    Then she receives 10 recovery codes
    And alice's two-factor authentication is on
    When alice logs in with her password and a recovery code
    Then the login succeeds
    When alice logs in with her password and the same recovery code again
    Then the login is refused with UNAUTHENTICATED

  Scenario: Turning two-factor authentication off needs a fresh code
    Given alice has an account with two-factor authentication
    When alice turns two-factor authentication off with the code she confirmed with
    Then the request is refused with UNAUTHENTICATED
    And alice's two-factor authentication is on
    When alice turns two-factor authentication off with the code her app shows next
    Then alice's two-factor authentication is off
    When alice logs in with her password alone
    Then the login succeeds

  Scenario: Two operators freeze an account, its orders are cancelled, and two unfreeze it
    Given alice has an account with 1000 USD
    And alice places a limit buy order for 1 BTC at 100 USD
    When the operator proposes to freeze alice's account
    Then alice's token is still accepted
    When the approver approves the proposal
    Then alice's token is refused with UNAUTHENTICATED
    And logging in as alice is refused with ACCOUNT_FROZEN
    And the operators see alice's account frozen
    When the operator proposes to unfreeze alice's account
    And the approver approves the proposal
    Then the operators see alice's account not frozen
    And alice logs in again
    And alice's order is CANCELLED with 0 BTC filled
    And alice has 1000.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: Operators may freeze an account and keep its open orders
    Given alice has an account with 1000 USD
    And alice places a limit buy order for 1 BTC at 100 USD
    When the operator proposes to freeze alice's account and keep its open orders
    And the approver approves the proposal
    Then logging in as alice is refused with ACCOUNT_FROZEN
    And alice's token is refused with UNAUTHENTICATED
    When the operator proposes to unfreeze alice's account
    And the approver approves the proposal
    And alice logs in again
    Then alice's order is OPEN with 0 BTC filled
    And no money was created or destroyed
