Feature: Cancel-on-disconnect
  A market maker's bot that asks for it when it connects has its owner's
  open orders cancelled as soon as its WebSocket drops, so quotes do not
  stay on the book while nobody is watching them. A connection that did
  not ask leaves them.

  Background:
    Given a running Marionette with the market BTC-USD
    And alice has an account with 10000 USD
    And alice registers an Ed25519 API key "market maker" with the scopes READ, TRADE
    And alice places a limit buy order for 0.1 BTC at 100 USD

  Scenario: A bot's connection that asked for it drops, and its owner's orders are cancelled
    Given her bot subscribes to her orders with the key, asking for cancel-on-disconnect
    When her bot's connection drops
    Then alice's order is CANCELLED with 0 BTC filled
    And alice has 10000.00 USD available and 0.00 USD locked
    And no money was created or destroyed

  Scenario: A connection that did not ask for it drops, and the orders stay
    Given her bot subscribes to her orders with the key
    When her bot's connection drops
    Then a second later alice's order is still OPEN
    And alice has 9989.97 USD available and 10.03 USD locked
