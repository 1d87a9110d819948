Feature: Operators use two-factor authentication
  An operator's password alone moves no money. An operator who has not
  enrolled in two-factor authentication (TOTP) may log in only to enrol:
  every operator action, through GraphQL or marionettectl, is refused until
  then. From then on an operator's login needs the app's code (or a
  recovery code), and the audit log shows the other operators who enrolled.

  Scenario: An operator acts only once enrolled, and from then on logs in with a code
    Given a running Marionette whose operators must use two-factor authentication
    When the approver, not yet enrolled, creates the asset BTC with marionettectl
    Then marionettectl refuses with TWO_FACTOR_ENROLMENT_REQUIRED
    And the approver, logged in through GraphQL, is refused the proposals with TWO_FACTOR_ENROLMENT_REQUIRED
    When the approver enrols in two-factor authentication with marionettectl
    Then the audit log shows the approver turned two-factor authentication on
    And logging in as the approver with marionettectl without a code is refused with TWO_FACTOR_REQUIRED
    And logging in as the approver with marionettectl and the code just used is refused with UNAUTHENTICATED
    When the approver logs in with marionettectl and a recovery code
    And the approver creates the asset BTC with marionettectl
    Then the asset BTC exists
