#!/usr/bin/env python3
"""A short client for Marionette's GraphQL API with a signed API key.

Every request carries the key's id, the time of signing (Unix ms) and a
signature over  timestamp "\\n" METHOD "\\n" path "\\n" body :

- an HMAC key: HMAC-SHA256 keyed with the secret shown at creation (its
  text, as UTF-8), base64. The standard library is enough.
- an Ed25519 key: the signature of the same bytes with the private key whose
  public half was registered, base64 (needs the `cryptography` package).

Use it as a module:

    client = Client("https://api.bank.example", key_id, hmac_secret=secret)
    client.graphql("{ balances { asset available } }")

or from a shell, with the key in the environment:

    MARIONETTE_URL=... MARIONETTE_KEY=... MARIONETTE_SECRET=... \\
        python3 marionette_client.py '{ balances { asset available } }' ['{"var": 1}']

(MARIONETTE_ED25519_KEY_FILE, a PEM private key, instead of MARIONETTE_SECRET
for an Ed25519 key.) It prints the answer's JSON and exits 1 when the answer
has errors.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request


class MarionetteError(Exception):
    """An answer with errors: `code` is the first error's extensions.code."""

    def __init__(self, answer):
        self.answer = answer
        first = (answer.get("errors") or [{}])[0]
        self.code = first.get("extensions", {}).get("code", "")
        super().__init__(f"{self.code}: {first.get('message', '')}")


class Client:
    def __init__(self, url, key_id, hmac_secret=None, ed25519_private_key=None, timeout_s=10):
        if (hmac_secret is None) == (ed25519_private_key is None):
            raise ValueError("give hmac_secret or ed25519_private_key, one of them")
        self.url = url.rstrip("/")
        self.key_id = key_id
        self.hmac_secret = hmac_secret
        self.ed25519_private_key = ed25519_private_key
        self.timeout_s = timeout_s

    def sign(self, timestamp, method, path, body):
        payload = b"\n".join([timestamp.encode(), method.encode(), path.encode(), body])
        if self.hmac_secret is not None:
            digest = hmac.new(self.hmac_secret.encode(), payload, hashlib.sha256).digest()
        else:
            digest = self.ed25519_private_key.sign(payload)
        return base64.b64encode(digest).decode()

    def signed_headers(self, method, path, body):
        timestamp = str(int(time.time() * 1000))
        return {
            "X-Marionette-Key": self.key_id,
            "X-Marionette-Timestamp": timestamp,
            "X-Marionette-Signature": self.sign(timestamp, method, path, body),
        }

    def send(self, path, body, headers):
        """POSTs `body` with `headers` as they are (to resend a request as it was)."""
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            # A refused request (401, 403, 429) answers JSON with a code too.
            return json.load(error)

    def graphql(self, query, variables=None, attempts=10):
        """The answer's data; raises MarionetteError when it has errors.

        UNAVAILABLE (the gateway starting, or its ledger out of reach) is
        retried, signed afresh each time, up to `attempts` times a second apart.
        """
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        for attempt in range(attempts):
            answer = self.send("/graphql", body, self.signed_headers("POST", "/graphql", body))
            first = (answer.get("errors") or [{}])[0]
            if first.get("extensions", {}).get("code") != "UNAVAILABLE" or attempt == attempts - 1:
                break
            time.sleep(1)
        if answer.get("errors"):
            raise MarionetteError(answer)
        return answer["data"]


def from_environment():
    url, key_id = os.environ["MARIONETTE_URL"], os.environ["MARIONETTE_KEY"]
    key_file = os.environ.get("MARIONETTE_ED25519_KEY_FILE")
    if key_file:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        with open(key_file, "rb") as pem:
            return Client(url, key_id, ed25519_private_key=load_pem_private_key(pem.read(), password=None))
    return Client(url, key_id, hmac_secret=os.environ["MARIONETTE_SECRET"])


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    client = from_environment()
    variables = json.loads(argv[2]) if len(argv) == 3 else {}
    try:
        print(json.dumps(client.graphql(argv[1], variables)))
        return 0
    except MarionetteError as error:
        print(json.dumps(error.answer))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
