Feature: Perpetual futures: margin, the mark, funding, liquidation and an insurance fund
  The white paper's third use case, a derivatives exchange. BTC-USD-PERP
  trades contracts on BTC settled in USD on the same book as spot: a tick
  of 0.1 USD, a lot of 0.001 BTC. Its margin is 10% of the notional to open
  (10x at most) and 5% to keep (maintenance); a position whose margin falls
  below maintenance is liquidated with a penalty of 1% of its notional for
  the insurance fund. Positions stand at the mark, which every new mark
  moves into or out of their margin. The mark is the median of the index
  (the oracle's price) plus the funding basis, the index plus the book's
  basis, and the last trade: with no interest and no premium the first two
  are the index, so the mark is the oracle's price.

  Background:
    Given a running Marionette with the market BTC-USD
    And oracle has an account

  Scenario: A long is opened, the price falls, and it is liquidated below maintenance margin
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, no interest and funding every 3600 seconds, priced by oracle
    And the oracle prices BTC-USD-PERP at 60000 USD
    And alice has an account with 10000 USD
    And bob has an account with 20000 USD
    And carol has an account with 100000 USD
    And alice uses isolated margin on BTC-USD-PERP
    # 1 BTC at 60000 at 10x: 6000 of margin each; alice keeps 4000.
    When alice buys 1 BTC on BTC-USD-PERP at 60000 USD
    And bob sells 1 BTC on BTC-USD-PERP at 60000 USD
    # Liquidated below 5% of the mark p: 6000 + (p - 60000) < 0.05 p, so
    # p < 54000 / 0.95 = 56842.105...: the highest tick below is 56842.1.
    Then alice is long 1 BTC on BTC-USD-PERP from 60000 USD with 6000.00 USD of margin, liquidated at 56842.1 USD
    And alice has 4000.00 USD available and 0.00 USD locked
    # The mark falls 3000: from alice's margin to bob's, pushed to her
    # subscriptions and shown in the ticker.
    When alice subscribes to her positions and the mark of BTC-USD-PERP
    And the oracle prices BTC-USD-PERP at 57000 USD
    Then alice is long 1 BTC on BTC-USD-PERP from 60000 USD with 3000.00 USD of margin, liquidated at 56842.1 USD
    And bob is short 1 BTC on BTC-USD-PERP from 60000 USD with 9000.00 USD of margin
    And alice receives her position on BTC-USD-PERP with 3000.00 USD of margin at the mark 57000 USD
    And alice receives the mark 57000 USD and the index 57000 USD
    And the ticker of BTC-USD-PERP shows the mark 57000 USD and the index 57000 USD
    # At 56800 her 2800 is below 5% of 56800 (2840): the penalty, 1% of
    # 56800 = 568, goes to the fund, the other 2232 back to her; the
    # liquidation book offers the lot no lower than 56800 - 568 = 56232,
    # and carol's bid takes it at 56500: the fund pays the 300 the sale is
    # below the mark and keeps 268.
    When carol buys 1 BTC on BTC-USD-PERP at 56500 USD
    And the oracle prices BTC-USD-PERP at 56800 USD
    Then alice has no position on BTC-USD-PERP
    And alice was liquidated on BTC-USD-PERP at 56800 USD with a penalty of 568.00 USD
    And alice has 6232.00 USD available and 0.00 USD locked
    And carol is long 1 BTC on BTC-USD-PERP from 56500 USD
    And the insurance fund of BTC-USD-PERP holds 268.00 USD
    And no money was created or destroyed

  Scenario: Funding is paid by the longs to the shorts at each interval
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, an interest rate of 0.01% and funding every 10 seconds, priced by oracle
    And the oracle prices BTC-USD-PERP at 60000 USD
    And alice has an account with 10000 USD
    And bob has an account with 10000 USD
    When alice buys 1 BTC on BTC-USD-PERP at 60000 USD
    And bob sells 1 BTC on BTC-USD-PERP at 60000 USD
    # The book is empty at every sample, so the premium is 0: the rate is
    # premium + clamp(interest - premium, ±0.05%) = 0.01%. The trade at the index makes the mark the index:
    # 1 BTC x 60000 x 0.01% = 6.00 USD, long to short.
    And the next funding of BTC-USD-PERP is paid
    Then the funding was paid at a rate of 0.0001 at 60000 USD, 6.00 USD in all
    And alice has paid 6.00 USD of funding on BTC-USD-PERP
    And bob has received 6.00 USD of funding on BTC-USD-PERP
    And no money was created or destroyed

  Scenario: A bid above the index makes the longs pay the premium
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, an interest rate of 0.01% and funding every 10 seconds, priced by oracle
    And the oracle prices BTC-USD-PERP at 60000 USD
    And alice has an account with 10000 USD
    And bob has an account with 10000 USD
    And carol has an account with 10000 USD
    When alice buys 1 BTC on BTC-USD-PERP at 60000 USD
    And bob sells 1 BTC on BTC-USD-PERP at 60000 USD
    And carol buys 0.1 BTC on BTC-USD-PERP at 60120 USD
    # The ledger samples the book each second. The impact notional is
    # 500 USD of margin at 10x, 5000 USD: carol's bid (0.1 x 60120 =
    # 6012 USD) fills it, so the impact bid is 60120; no one asks, so the
    # ask side counts as the index. Premium (60120 - 60000) / 60000 =
    # 0.2%; rate 0.2% + clamp(0.01% - 0.2%, ±0.05%) = 0.15%. With no ask
    # there is no book basis, and the last trade is 60000: the mark stays
    # the index. The interval after the one carol's bid arrived in is
    # sampled with it throughout: 1 BTC x 60000 x 0.15% = 90.00 USD.
    And the next funding of BTC-USD-PERP is paid
    And the next funding of BTC-USD-PERP is paid
    Then the funding was paid at a rate of 0.0015 at 60000 USD, 90.00 USD in all
    And no money was created or destroyed

  Scenario: Reduce-only orders only shrink a position, and a position closes in one call
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, no interest and funding every 3600 seconds, priced by oracle
    And the oracle prices BTC-USD-PERP at 60000 USD
    And alice has an account with 10000 USD
    And bob has an account with 10000 USD
    And carol has an account with 10000 USD
    When alice buys 1 BTC on BTC-USD-PERP at 60000 USD
    And bob sells 1 BTC on BTC-USD-PERP at 60000 USD
    # A buy would grow alice's long; 1.5 BTC would turn it short.
    And alice places a reduce-only buy of 0.1 BTC on BTC-USD-PERP at 59000 USD
    Then the request is refused with BAD_USER_INPUT
    When alice places a reduce-only sell of 1.5 BTC on BTC-USD-PERP at 61000 USD
    Then the request is refused with BAD_USER_INPUT
    # Closing at 60500 sells her 1 BTC reduce-only; carol takes it. The
    # mark stays 60000 (the median of 60000, 60000 and the last trade,
    # 60500): alice gets the 500 her sale is above it, from carol.
    When alice closes her position on BTC-USD-PERP at 60500 USD
    And carol buys 1 BTC on BTC-USD-PERP at 60500 USD
    Then alice has no position on BTC-USD-PERP
    And alice has 10500.00 USD available and 0.00 USD locked
    And carol is long 1 BTC on BTC-USD-PERP from 60500 USD
    # Nothing left to close.
    When alice closes her position on BTC-USD-PERP
    Then the request is refused with NOT_FOUND
    # Bob closes at the market: a buy no higher than the mark plus his
    # initial margin rate (60000 + 10% = 66000) takes carol's offer at
    # 60000, the mark: neither gains; carol has lost the 500.
    When carol sells 1 BTC on BTC-USD-PERP at 60000 USD
    And bob closes his position on BTC-USD-PERP
    Then bob has no position on BTC-USD-PERP
    And carol has no position on BTC-USD-PERP
    And bob has 10000.00 USD available and 0.00 USD locked
    And carol has 9500.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A bankrupt long with an empty fund deleverages the most profitable and leveraged short first
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, no interest and funding every 3600 seconds, priced by oracle
    And the oracle prices BTC-USD-PERP at 60000 USD
    And alice has an account with 6000 USD
    And bob has an account with 20000 USD
    And carol has an account with 8000 USD
    And dave has an account with 10000 USD
    When bob sells 0.6 BTC on BTC-USD-PERP at 60000 USD
    And alice buys 0.6 BTC on BTC-USD-PERP at 60000 USD
    And carol sells 0.6 BTC on BTC-USD-PERP at 60000 USD
    And alice buys 0.4 BTC on BTC-USD-PERP at 60000 USD
    And dave buys 0.2 BTC on BTC-USD-PERP at 60000 USD
    Then alice is long 1 BTC on BTC-USD-PERP from 60000 USD with 6000.00 USD of margin
    # At 54000 alice has lost her 6000: bankrupt at the mark, nothing left
    # for a penalty, the fund empty. Her lot is deleveraged at 54000
    # against the shorts, ranked by profit ratio x leverage: both made 10%,
    # carol's 0.6 BTC on 8000 + 3600 is more leveraged than bob's on
    # 20000 + 3600, so all of carol's 0.6 goes first, then 0.4 of bob's.
    When the oracle prices BTC-USD-PERP at 54000 USD
    Then alice has no position on BTC-USD-PERP
    And alice was liquidated on BTC-USD-PERP at 54000 USD with a penalty of 0.00 USD
    And carol was auto-deleveraged on BTC-USD-PERP by 0.6 BTC at 54000 USD
    And bob was auto-deleveraged on BTC-USD-PERP by 0.4 BTC at 54000 USD
    And carol has no position on BTC-USD-PERP
    And carol has 11600.00 USD available and 0.00 USD locked
    And bob is short 0.2 BTC on BTC-USD-PERP from 60000 USD
    And the insurance fund of BTC-USD-PERP holds 0.00 USD
    And no money was created or destroyed

  Scenario: Orders wait for the oracle, and only the market's oracle prices it
    Given the operators list BTC-USD-PERP with 10% initial and 5% maintenance margin, a 1% penalty, no interest and funding every 3600 seconds, priced by oracle
    And alice has an account with 10000 USD
    When alice buys 1 BTC on BTC-USD-PERP at 60000 USD
    Then the request is refused with BAD_USER_INPUT
    When alice prices BTC-USD-PERP at 60000 USD
    Then the request is refused with FORBIDDEN
    When the oracle prices BTC-USD-PERP at 60000 USD
    And alice buys 2 BTC on BTC-USD-PERP at 60000 USD
    Then the request is refused with INSUFFICIENT_FUNDS
    And alice has 10000.00 USD available and 0.00 USD locked
