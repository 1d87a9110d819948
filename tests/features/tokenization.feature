Feature: Tokenization: issue a token, sell it in an offering, move it under its rules
  An issuer, made one by the operators, turns an asset into a token and
  sells it in an offering. A subscription holds the investor's payment in
  escrow; at the end the ledger's clock closes the offering in one batch:
  below its target everyone is refunded and nothing is issued; beyond its
  hard cap subscriptions are scaled down pro rata in whole lots, the lots
  left over going to the largest remainders. The issuer is paid the
  proceeds less the platform's fee, which the operators set. Investors
  carry claims the operators attest (country, category, expiry), and a
  token's transfer rules decide who may hold it. An issuer distributes
  income to the holders at a record time, each paid their share less the
  tax withheld at their rate.

  Background:
    Given a running Marionette with the market BTC-USD
    And the operators make ivy an issuer
    And the operators set the platform's fee on offerings to 100 bps

  Scenario: An oversubscribed offering is allocated pro rata, its remainder to the largest remainder
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice, bob and carol are verified investors from 276 with 10000 USD each
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 20 seconds
    And alice subscribes for 600 ACME
    And bob subscribes for 500 ACME
    And carol subscribes for 400 ACME
    Then the offering has 1500 ACME subscribed in 3 open subscriptions
    And alice has 4000.00 USD available and 0.00 USD locked
    And no money was created or destroyed
    When the offering closes
    Then the offering is ALLOCATED with 1000 ACME issued, 10000.00 USD raised and a fee of 100.00 USD
    And alice's subscription is ALLOCATED: 400 ACME allocated, 4000.00 USD paid and 2000.00 USD refunded
    And bob's subscription is ALLOCATED: 333 ACME allocated, 3330.00 USD paid and 1670.00 USD refunded
    And carol's subscription is ALLOCATED: 267 ACME allocated, 2670.00 USD paid and 1330.00 USD refunded
    And alice has 6000.00 USD available and 0.00 USD locked
    And alice has 400 ACME available and 0 ACME locked
    And ivy has 9900.00 USD available and 0.00 USD locked
    And the token ACME has a supply of 1000
    And the cap table of ACME is alice 400 (0.4), bob 333 (0.333), carol 267 (0.267)
    And no money was created or destroyed

  Scenario: An offering that misses its target refunds everyone and issues nothing
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice and bob are verified investors from 276 with 10000 USD each
    When ivy offers 1000 ACME at 10.00 USD each, a target of 500, 1 to 1000 per investor, for 10 seconds
    And alice subscribes for 100 ACME
    And bob subscribes for 200 ACME
    And the offering closes
    Then the offering is REFUNDED with 0 ACME issued, 0.00 USD raised and a fee of 0.00 USD
    And alice's subscription is REFUNDED: 0 ACME allocated, 0.00 USD paid and 1000.00 USD refunded
    And bob's subscription is REFUNDED: 0 ACME allocated, 0.00 USD paid and 2000.00 USD refunded
    And alice has 10000.00 USD available and 0.00 USD locked
    And alice has no ACME
    And ivy has no USD
    And the token ACME has a supply of 0
    When alice subscribes for 200 ACME
    Then the request is refused with OFFERING_CLOSED
    And alice's request for 100 ACME again answers her REFUNDED subscription
    When alice cancels her subscription
    Then the request is refused with CANCEL_CUTOFF_PASSED
    And no money was created or destroyed

  Scenario: A subscription is cancelled before the cut-off, not after
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice and bob are verified investors from 276 with 10000 USD each
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 24 seconds, cancellable until 12 seconds before the end
    And alice subscribes for 300 ACME
    And bob cancels alice's subscription
    Then the request is refused with NOT_FOUND
    When alice cancels her subscription
    Then alice's subscription is CANCELLED: 0 ACME allocated, 0.00 USD paid and 3000.00 USD refunded
    And alice has 10000.00 USD available and 0.00 USD locked
    When bob subscribes for 200 ACME
    And 13 seconds pass
    And bob cancels his subscription
    Then the request is refused with CANCEL_CUTOFF_PASSED
    And bob has 8000.00 USD available and 0.00 USD locked
    When the offering closes
    Then bob's subscription is ALLOCATED: 200 ACME allocated, 2000.00 USD paid and 0.00 USD refunded
    And alice has no ACME
    And no money was created or destroyed

  Scenario: A token closed to a country is refused to its investors, by subscription and by transfer
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000, not for investors from 840
    And alice and bob are verified investors from 276 with 10000 USD each
    And dave is a verified investor from 840 with 10000 USD
    And erin has an account with 10000 USD
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 10 seconds
    And dave subscribes for 100 ACME
    Then the request is refused with COMPLIANCE_REFUSED
    When erin subscribes for 100 ACME
    Then the request is refused with COMPLIANCE_REFUSED
    When alice subscribes for 300 ACME
    And the offering closes
    And alice transfers 50 ACME to dave
    Then the request is refused with COMPLIANCE_REFUSED
    When alice transfers 50 ACME to erin
    Then the request is refused with COMPLIANCE_REFUSED
    When alice transfers 50 ACME to bob
    Then alice has 250 ACME available and 0 ACME locked
    And bob has 50 ACME available and 0 ACME locked
    And dave has no ACME
    And the cap table of ACME is alice 250 (0.833333333333), bob 50 (0.166666666666)
    And no money was created or destroyed

  Scenario: The token lists when its offering closes, and its market refuses an order from a country closed to it
    Given the operators set the fees of the markets tokens list on to 0.1%
    And ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000, not for investors from 840
    And alice and bob are verified investors from 276 with 10000 USD each
    And dave is a verified investor from 840 with 10000 USD
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 10 seconds, listing at a tick of 0.01 USD and a lot of 1 ACME
    And alice subscribes for 300 ACME
    And the offering closes
    Then the market ACME-USD lists at a tick of 0.01 and a lot of 1, with fees of 0.1%
    When dave places a limit buy order for 10 ACME at 12.00 USD
    Then the request is refused with COMPLIANCE_REFUSED
    And dave has 10000.00 USD available and 0.00 USD locked
    When bob places a limit buy order for 10 ACME at 12.00 USD
    And alice places a limit sell order for 10 ACME at 12.00 USD
    Then bob has 10 ACME available and 0 ACME locked
    And bob has 9879.88 USD available and 0.00 USD locked
    And alice has 290 ACME available and 0 ACME locked
    And alice has 7119.88 USD available and 0.00 USD locked
    And the cap table of ACME is alice 290 (0.966666666666), bob 10 (0.033333333333)
    And no money was created or destroyed

  Scenario: Allocated tokens vest in tranches and cannot be sent before they vest
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice and bob are verified investors from 276 with 10000 USD each
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 10 seconds, vesting in 2 tranches every 20 seconds
    And alice subscribes for 101 ACME
    And the offering closes
    Then alice has 2 tranches of ACME vesting: 50 and 51
    And alice has no ACME
    When alice transfers 10 ACME to bob
    Then the request is refused with INSUFFICIENT_FUNDS
    When alice's first tranche vests
    Then alice has 50 ACME available and 0 ACME locked
    And the cap table of ACME is alice 101 (1) with 51 locked
    And no money was created or destroyed

  Scenario: A dividend is paid to the holders at its record, less the tax withheld at each one's rate
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice, bob and carol are verified investors from 276 with 10000 USD each
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 10 seconds
    And alice subscribes for 500 ACME
    And bob subscribes for 300 ACME
    And carol subscribes for 200 ACME
    And the offering closes
    And alice transfers 100 ACME to ivy
    And the operators set alice's withholding rate to 12.8%
    And the operators remove carol's investor claims
    And ivy distributes a DIVIDEND of 1000.00 USD to the holders of ACME, recorded in 3 seconds and claimable for 20 seconds after, withholding 30% from holders without claims
    Then ivy has 8900.00 USD available and 0.00 USD locked
    When alice claims her entitlement
    Then the request is refused with NOT_CLAIMABLE
    When the distribution is recorded
    Then the distribution is RECORDED: 3 holders of 900 ACME entitled to 999.99 USD, 0.01 USD back to the issuer
    And the entitlements are alice 400: 444.44 less 12.8% (56.88) is 387.56; bob 300: 333.33 less 0% (0.00) is 333.33; carol 200: 222.22 less 30% (66.66) is 155.56
    When bob transfers 100 ACME to alice
    Then the cap table of ACME is alice 500 (0.5), bob 200 (0.2), carol 200 (0.2), ivy 100 (0.1)
    And the cap table of ACME at the record is alice 400 (0.4), bob 300 (0.3), carol 200 (0.2), ivy 100 (0.1)
    When alice claims her entitlement
    Then alice has 5387.56 USD available and 0.00 USD locked
    When alice claims her entitlement
    Then the request is refused with NOT_CLAIMABLE
    When ivy claims his entitlement
    Then the request is refused with NOT_CLAIMABLE
    When carol claims her entitlement
    Then carol has 8155.56 USD available and 0.00 USD locked
    When ivy reclaims what was not claimed
    Then the request is refused with CLAIM_PERIOD_OPEN
    And no money was created or destroyed
    When the claims end
    And bob claims his entitlement
    Then the request is refused with NOT_CLAIMABLE
    When ivy reclaims what was not claimed
    Then the distribution is CLOSED: 666.66 USD claimed, 123.54 USD withheld and 333.33 USD reclaimed
    And ivy has 9233.34 USD available and 0.00 USD locked
    And the house holds 123.54 USD withheld for the tax authorities
    And no money was created or destroyed

  Scenario: The issuer's agent freezes part of a balance, forces a transfer and recovers a lost account, each on an operator's approval
    Given ivy creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    And alice, bob and carol are verified investors from 276 with 10000 USD each
    And erin has an account with 100 USD
    When ivy offers 1000 ACME at 10.00 USD each, a target of 100, 1 to 1000 per investor, for 10 seconds
    And alice subscribes for 500 ACME
    And bob subscribes for 300 ACME
    And the offering closes
    And ivy freezes 200 of alice's ACME
    Then alice has 500 ACME available and 0 ACME locked
    When an operator approves it
    Then the proposal is EXECUTED: "freeze 200 ACME of user {alice}'s tokens"
    And alice has 300 ACME available and 0 ACME locked
    And the cap table of ACME is alice 500 (0.625), bob 300 (0.375) with 200 locked
    When alice transfers 301 ACME to bob
    Then the request is refused with INSUFFICIENT_FUNDS
    When ivy forces a transfer of 10 ACME from alice to erin
    And an operator approves it
    Then the request is refused with COMPLIANCE_REFUSED
    When ivy forces a transfer of 350 ACME from alice to bob
    And an operator approves it
    Then the proposal is EXECUTED: "force a transfer of 350 ACME from user {alice} to user {bob}"
    And the cap table of ACME is bob 650 (0.8125), alice 150 (0.1875) with 150 locked
    When ivy recovers bob's ACME to carol
    And an operator approves it
    Then the proposal is EXECUTED: "recover everything user {bob} holds of ACME to their new account, user {carol}"
    And the cap table of ACME is carol 650 (0.8125), alice 150 (0.1875) with 150 locked
    And the audit log shows ivy proposing 4 agent actions, 3 of them executed on an operator's approval
    And no money was created or destroyed

  Scenario: Only issuers create tokens, and only the operators make issuers
    Given alice has an account with 100 USD
    When alice creates the token ACME with 0 decimals, a lot of 1 and a supply of at most 5000
    Then the request is refused with FORBIDDEN
    When alice makes herself an issuer
    Then the request is refused with FORBIDDEN
