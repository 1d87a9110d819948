// The WebSocket attacks of the security suite, with the clients browsers and
// bots use: the graphql-ws library's client, and the ws library's raw socket
// (which, like browsers, refuses a close frame over 125 bytes as invalid).
//
//   node attacks.mjs <port> <scenario> [token]
//
// Prints one JSON line: what was tried and how the socket ended
// ({"code":…,"reason":…} or {"error":…}), plus what the scenario saw.
import WebSocket from "ws";
import { createClient } from "graphql-ws";

const [port, scenario, token = ""] = process.argv.slice(2);
const url = `ws://127.0.0.1:${port}/graphql`;
const PROTOCOL = "graphql-transport-ws";
const BOOK = "subscription { orderBook(market: \"BTC-USD\") { sequence } }";

function report(result) {
  process.stdout.write(JSON.stringify({ scenario, ...result }) + "\n");
  process.exit(0);
}

/** A raw socket: sends `steps` in order (each after the answer to the one before, unless it expects none) and reports how it ends. */
function raw(steps, options = {}) {
  const socket = new WebSocket(url, PROTOCOL, options);
  const received = [];
  let pings = 0;
  socket.on("ping", () => pings++);
  socket.on("open", () => next());
  socket.on("message", (data) => {
    received.push(JSON.parse(data.toString()));
    next();
  });
  socket.on("close", (code, reason) => report({ code, reason: reason.toString(), reasonBytes: reason.length, received, pings }));
  socket.on("error", (error) => report({ error: String(error), received }));
  function next() {
    const step = steps.shift();
    if (step === undefined) return;
    if (typeof step === "string") return socket.send(step);
    const { expectsNoAnswer, ...message } = step;
    socket.send(JSON.stringify(message));
    if (expectsNoAnswer) next();
  }
  return socket;
}

const init = { type: "connection_init", payload: { Authorization: `Bearer ${token}` } };
const subscribe = (id) => ({ type: "subscribe", id, payload: { query: BOOK }, expectsNoAnswer: true });

switch (scenario) {
  case "not-json":
    raw(["this is not JSON"]);
    break;
  case "unknown-type":
    raw([init, { type: "x".repeat(200) }]);
    break;
  case "subscribe-before-init":
    raw([subscribe("1")]);
    break;
  case "duplicate-id":
    raw([init, subscribe("same"), subscribe("same")]);
    break;
  case "second-init":
    raw([init, init]);
    break;
  case "long-id":
    raw([init, subscribe("é".repeat(400)), subscribe("é".repeat(400))]);
    break;
  case "idle":
    // Acknowledged, answers pings (ws does by default), subscribes to nothing.
    raw([init]);
    break;
  case "deaf":
    // Subscribed, but never answers a ping: a peer that has gone away.
    raw([init, subscribe("book")], { autoPong: false });
    break;
  case "expiring":
    // Subscribed with a token that expires while the socket is open.
    raw([init, subscribe("book")]);
    break;
  case "client": {
    // The graphql-ws client as an application uses it: a subscription's
    // first message, then a clean dispose.
    const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: false });
    let closed = null;
    client.on("closed", (event) => (closed = { code: event.code, reason: event.reason }));
    const unsubscribe = client.subscribe(
      { query: BOOK },
      {
        next: (value) => {
          unsubscribe();
          client.dispose();
          setTimeout(() => report({ next: value, closed }), 200);
        },
        error: (error) => report({ error: String(error?.reason ?? error?.message ?? JSON.stringify(error)), closed }),
        complete: () => {},
      },
    );
    break;
  }
  case "client-bad-query": {
    // A subscription that does not validate: the client's error callback, and the socket stays usable.
    const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` }, retryAttempts: 0 });
    client.subscribe(
      { query: "subscription { noSuchField }" },
      {
        next: (value) => report({ unexpectedNext: value }),
        error: (errors) => {
          const graphqlErrors = Array.isArray(errors) ? errors : null;
          client.subscribe(
            { query: BOOK },
            {
              next: (value) => {
                client.dispose();
                report({ errors: graphqlErrors, thenNext: value });
              },
              error: (error) => report({ error: String(error?.reason ?? error) }),
              complete: () => {},
            },
          );
        },
        complete: () => {},
      },
    );
    break;
  }
  default:
    console.error(`unknown scenario ${scenario}`);
    process.exit(2);
}

setTimeout(() => report({ error: "timed out after 20 s" }), 20_000);
