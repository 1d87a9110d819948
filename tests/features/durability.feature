Feature: Durability
  What the exchange acknowledged survives the daemons stopping: a clean
  restart (systemctl restart) and a crash (kill -9) alike.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And bob has an account with 1 BTC

  Scenario Outline: Everything is still there after the three daemons <stop> and start again
    Given bob places a limit sell order for 0.5 BTC at 100 USD
    And alice places a limit buy order for 0.3 BTC at 101 USD
    And alice requests a withdrawal of 100 USD to "DE89 3704 0044 0532 0130 00"
    When all three daemons <stop> and start again
    Then alice's token is still accepted
    And alice has 0.30000000 BTC available and 0.00000000 BTC locked
    And alice has 9869.94 USD available and 0.00 USD locked
    And bob's order is PARTIALLY_FILLED with 0.3 BTC filled
    And the order book of BTC-USD has asks of 0.2 BTC at 100 USD
    And the latest trade of BTC-USD is 0.3 BTC at 100 USD, taken by a buyer
    And the withdrawal is PENDING
    And alice's USD ledger entries are, newest first: WITHDRAWAL -100.00, FEE -0.06, TRADE -30.00, DEPOSIT 10000.00
    And alice's ledger entries are, newest first: WITHDRAWAL -100.00, TRADE 0.30000000, FEE -0.06, TRADE -30.00, DEPOSIT 10000.00
    And no money was created or destroyed
    When alice places a limit buy order for 0.2 BTC at 100 USD
    Then the order is FILLED with 0.2 BTC filled at an average price of 100 USD
    And bob's order is FILLED with 0.5 BTC filled
    And no money was created or destroyed

    Examples:
      | stop                        |
      | stop cleanly (SIGTERM)      |
      | are killed (kill -9)        |
