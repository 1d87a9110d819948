Feature: Guessing is held back
  Passwords and two-factor codes are guessed one account at a time, from
  many addresses. Each account's guesses are counted whatever the address
  they come from; past a few, every attempt waits, the right one included.
  (The other suites raise these limits out of their way; here they are low.)

  Scenario: Wrong two-factor codes are held back per account, and then so is the right one
    Given a running Marionette that holds back an account's guesses after 5 tries
    And alice has an account with two-factor authentication
    When someone with alice's session sends wrong two-factor codes until held back
    Then it was held back within 5 tries with RATE_LIMITED
    And turning alice's two-factor authentication off with the code her app shows next is refused with RATE_LIMITED
    And alice's two-factor authentication is on
