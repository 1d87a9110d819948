Feature: Donations: campaigns, gifts, matching gifts, receipts and payouts
  An organiser the operators verified opens a campaign with a goal and a
  deadline; it keeps what it raises, or is all or nothing. Donors give from
  their balance; each gift is valued in the campaign's reference asset when
  it comes, receipted with a number in the organiser's sequence for the
  year, and shown on the campaign's wall as the donor chose. Sponsors'
  pools match gifts up to their caps. A gift in another asset may be
  converted at receipt into the campaign's through convert, at the donor's
  quote. After the deadline the operators pay
  the campaign out under four-eyes, the platform keeping its fee and the
  donors' tips; an all-or-nothing goal missed gives every gift back.

  Background:
    Given a running Marionette with the market BTC-USD
    And the operators verify ann as the organisation "Water Aid", registration 288701 in 826
    And the operators set the platform's fee on gifts to 250 bps

  Scenario: A keep-what-you-raise campaign is paid out, less the fee, under four-eyes
    Given bob has an account with 1000 USD
    And carol has an account with 1000 USD
    When ann opens a keep-what-you-raise campaign "Wells" for 1000 USD ending in 8 seconds
    Then giving 100.00 USD with a tip of 5.00 costs bob 105.00 USD: 2.50 of fee and 97.50 to the campaign
    When bob gives 100.00 USD with a tip of 5.00 as "Bob", known to the organiser
    And carol gives 40.00 USD
    Then the campaign has raised 140.00 USD of its 1000.00 goal from 2 gifts
    And bob has 895.00 USD available and 0.00 USD locked
    When the campaign's deadline passes
    Then the campaign is ENDED
    When the operators pay the campaign out
    Then ann could not approve it herself
    And the payout paid 136.50 USD to ann, 3.50 USD of fees and 5.00 USD of tips
    And the campaign is PAID_OUT
    And ann has 136.50 USD available and 0.00 USD locked
    And the house has 0.00 USD of inventory and 8.50 USD of revenue
    And no money was created or destroyed

  Scenario: An all-or-nothing campaign that misses its goal gives every gift back
    Given bob has an account with 1000 USD
    And carol has an account with 1000 USD
    When ann opens an all-or-nothing campaign "Clinic" for 1000 USD ending in 6 seconds
    And bob gives 100.00 USD with a tip of 2.00
    And carol gives 300.00 USD
    Then the campaign has raised 400.00 USD of its 1000.00 goal from 2 gifts
    And bob has 898.00 USD available and 0.00 USD locked
    When the campaign's deadline passes
    Then the campaign is REFUNDED
    And bob has 1000.00 USD available and 0.00 USD locked
    And carol has 1000.00 USD available and 0.00 USD locked
    And ann has no USD
    When the operators pay the campaign out
    Then the request is refused with BAD_USER_INPUT
    And no money was created or destroyed

  Scenario: A sponsor's pool matches gifts up to its caps until it is exhausted
    Given dee has an account with 1000 USD
    And bob has an account with 1000 USD
    And carol has an account with 1000 USD
    And erin has an account with 1000 USD
    And frank has an account with 1000 USD
    When ann opens a keep-what-you-raise campaign "School" for 1000 USD ending in 60 seconds
    And dee funds a matching pool of 100 USD, one for one, at most 50 a gift and 70 a donor
    And bob gives 30.00 USD
    Then bob's gift is matched with 30.00 USD
    When carol gives 80.00 USD
    Then carol's gift is matched with 50.00 USD
    When erin gives 40.00 USD
    Then erin's gift is matched with 20.00 USD
    And the pool has 0.00 USD left of 100.00
    When frank gives 10.00 USD
    Then frank's gift is matched with nothing
    And the campaign has raised 260.00 USD of its 1000.00 goal from 4 gifts
    And dee has 900.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: An anonymous gift is shown as such, its amount hidden, its donor known to compliance
    Given bob has an account with 1000 USD
    And carol has an account with 1000 USD
    When ann opens a keep-what-you-raise campaign "Wells" for 1000 USD ending in 60 seconds
    And bob gives 100.00 USD as "Bob", known to the organiser
    And carol gives 25.00 USD anonymously, the amount hidden
    Then the campaign's wall shows carol's gift as Anonymous with no amount
    And the campaign's wall shows bob's gift as Bob with 100.00 USD
    And ann sees bob behind bob's gift and nobody behind carol's
    And the operators see carol behind carol's gift
    And no money was created or destroyed

  Scenario: Each gift gets a numbered receipt, as a PDF that says who gave what to whom
    Given bob has an account with 1000 USD
    And carol has an account with 1000 USD
    When ann opens a keep-what-you-raise campaign "Wells" for 1000 USD ending in 60 seconds
    And carol gives 40.00 USD
    And bob gives 100.00 USD with a tip of 5.00 as "Bob", known to the organiser
    Then bob's receipt is number 2 of ann's organisation this year
    And bob's receipt as PDF reads:
      | Donation receipt                                                 |
      | Receipt number: {receipt}                                        |
      | Date received: {today}                                           |
      | Organisation: Water Aid                                          |
      | Registration: 288701, country 826                                |
      | Campaign: Wells                                                  |
      | Donor: bob@domain.io                                             |
      | Given: 100.00 USD                                                |
      | Value when received: 100.00 USD                                  |
      | A tip of 5.00 USD to the platform is not part of this gift.      |
      | No goods or services were provided in exchange for this gift.    |
      | Issued by Marionette on behalf of Water Aid                      |
    And carol cannot read bob's receipt
    And bob's statement for this year lists 1 gift, 100.00 USD in all

  Scenario: A gift in BTC is converted at receipt into the campaign's USD through convert
    Given the operator funds the house with 100000 USD with the reference "inventory-usd"
    And the operators list the conversion pair BTC/USD at 50000 USD a unit, in steps of 0.00000001 BTC, with a spread of 50 bps and a fee of 10 bps
    And bob has an account with 1 BTC
    When ann opens a keep-what-you-raise campaign "Wells" for 1000 USD, also accepting BTC, ending in 10 seconds
    And bob asks for a quote of 0.01 BTC in USD
    Then bob's quote gives 497.00 USD for 0.01000000 BTC with a fee of 0.50 USD
    And giving 497.00 USD with a tip of 0.00 costs bob 497.00 USD: 12.42 of fee and 484.58 to the campaign
    When bob gives 0.01 BTC with a tip of 0.0002, converted at receipt with his quote
    Then bob's gift was converted into 497.00 USD: 12.42 of fee and 484.58 to the campaign
    And the campaign has raised 497.00 USD of its 1000.00 goal from 1 gift
    And bob has 0.98980000 BTC available and 0.00000000 BTC locked
    And bob has no USD
    And bob has made 1 conversion, of 0.01000000 BTC into 497.00 USD
    And bob's receipt as PDF reads:
      | Donation receipt                                                   |
      | Receipt number: {receipt}                                          |
      | Date received: {today}                                             |
      | Organisation: Water Aid                                            |
      | Registration: 288701, country 826                                  |
      | Campaign: Wells                                                    |
      | Donor: bob@domain.io                                               |
      | Given: 0.01000000 BTC                                              |
      | Value when received: 497.00 USD                                    |
      | Converted when received into 497.00 USD (conversion {conversion})  |
      | A tip of 0.00020000 BTC to the platform is not part of this gift.  |
      | No goods or services were provided in exchange for this gift.      |
      | Issued by Marionette on behalf of Water Aid                        |
    When the campaign's deadline passes
    And the operators pay the campaign out
    Then the payout's lines are:
      | asset | net        | fees       | tips       |
      | BTC   | 0.00000000 | 0.00000000 | 0.00020000 |
      | USD   | 484.58     | 12.42      | 0.00       |
    And ann has 484.58 USD available and 0.00 USD locked
    And the house has 0.01000000 BTC of inventory and 0.00020000 BTC of revenue
    And the house has 99500.00 USD of inventory and 15.42 USD of revenue
    And no money was created or destroyed
