Feature: API keys for bots
  Market makers connect their bots with keys that sign every request. A
  key does only what its scopes say, a request replayed or signed outside
  the receive window is refused, and a revoked key stops at once. The bot
  here is the Python client the README shows.

  Background:
    Given a running Marionette with the market BTC-USD

  Scenario: A bot trades with signed requests, and a replayed one is refused
    Given alice has an account with 1000 USD
    And alice creates an HMAC API key "market maker" with the scopes READ, TRADE
    When her bot places a limit buy order for 1 BTC at 100 USD with the Python client
    Then the order is OPEN
    And alice has 899.79 USD available and 100.21 USD locked
    When her bot sends one signed order for 1 BTC at 100 USD twice
    Then the request is refused with REPLAYED
    And alice has 799.58 USD available and 200.42 USD locked
    When her bot sends a request signed 60 seconds ago
    Then the request is refused with STALE_REQUEST
    And no money was created or destroyed

  Scenario: A key does only what its scopes allow
    Given alice has an account with 1000 USD
    And alice creates an HMAC API key "watcher" with the scopes READ
    Then her bot reads 1000.00 USD available with the Python client
    When her bot places a limit buy order for 1 BTC at 100 USD with the Python client
    Then the request is refused with FORBIDDEN
    When her bot tries to change her password with the Python client
    Then the request is refused with FORBIDDEN
    And alice has 1000.00 USD available and 0.00 USD locked

  Scenario: A revoked key is refused at once, on HTTP and on an open subscription
    Given alice has an account with 1000 USD
    And alice registers an Ed25519 API key "signer" with the scopes READ, TRADE
    And her bot subscribes to her orders with the key
    When her bot places a limit buy order for 1 BTC at 100 USD with the Python client
    Then the order is OPEN
    And the bot receives the order OPEN on its subscription
    When alice revokes the key
    Then the bot's subscription is closed
    When her bot reads her balances with the Python client
    Then the request is refused with UNAUTHENTICATED

  Scenario: A key that withdraws needs an IP allowlist, and requests from elsewhere are refused
    Given alice has an account with 1000 USD
    When alice creates an HMAC API key "payouts" with the scopes WITHDRAW
    Then the request is refused with BAD_USER_INPUT
    When alice creates an HMAC API key "payouts" with the scopes READ, WITHDRAW from 203.0.113.7 only
    And her bot reads her balances with the Python client
    Then the request is refused with FORBIDDEN

  Scenario: Creating a key needs a fresh two-factor code
    Given alice has an account with two-factor authentication
    When alice creates an HMAC API key "bot" with the scopes READ without a code
    Then the request is refused with TWO_FACTOR_REQUIRED
    When alice creates an HMAC API key "bot" with the scopes READ with the code her app shows next
    Then alice has 1 API key

  Scenario: A bot withdraws only to its owner's address book
    Given alice has an account with 1000 USD
    And alice creates an HMAC API key "payouts" with the scopes WITHDRAW from 127.0.0.1 only
    When her bot requests a withdrawal of 100 USD to "DE89 3704 0044 0532 0130 00" with the Python client
    Then the request is refused with ADDRESS_NOT_IN_BOOK
    When alice adds "DE89 3704 0044 0532 0130 00" on SEPA to her USD address book as "salary account"
    And alice's new addresses have waited out their cooldown
    And her bot requests a withdrawal of 100 USD to "DE89 3704 0044 0532 0130 00" with the Python client
    Then the withdrawal is PENDING
    And alice has 900.00 USD available and 0.00 USD locked
