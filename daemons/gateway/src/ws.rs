//! graphql-transport-ws, the protocol of the `graphql-ws` library (its
//! PROTOCOL.md), as a pure state machine: what each message a client sends
//! means for its socket, and the close codes the protocol gives to each
//! mistake. The I/O (the WebSocket, the subscriptions' streams, the timers)
//! is `http.rs`'s.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Close codes: RFC 6455's, then the protocol's own.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    /// The server is going away, or the peer stopped answering pings.
    pub const GOING_AWAY: u16 = 1001;
    pub const BAD_REQUEST: u16 = 4400;
    /// A subscribe before the connection was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// A close frame's payload is at most 125 bytes, two of them the code (RFC 6455, 5.5).
pub const CLOSE_REASON_BYTES_MAX: usize = 123;

/// How the server ends a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    /// At most [`CLOSE_REASON_BYTES_MAX`] bytes, cut at a character boundary.
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: &str) -> Close {
        let mut end = reason.len().min(CLOSE_REASON_BYTES_MAX);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Close { code, reason: reason[..end].to_string() }
    }
}

/// A subscribe message's GraphQL request.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribePayload {
    pub query: String,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Map<String, Value>>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

/// What the socket does about one message from its client; `T` is what the
/// socket keeps for each running subscription (see [`Session`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Step<T> {
    /// Decide on the client with this payload, then [`Session::acknowledge`]
    /// and send `connection_ack`, or close with 4403.
    Init(Map<String, Value>),
    /// Answer with a pong carrying this payload.
    Pong(Option<Value>),
    /// Start the subscription, then [`Session::started`] with what stops it.
    Start {
        id: String,
        payload: SubscribePayload,
    },
    /// Stop the subscription with what [`Session::started`] kept; no `complete` is sent back.
    Stop {
        id: String,
        running: T,
    },
    Nothing,
    Close(Close),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingInit,
    /// connection_init received, the answer not given yet.
    Initialising,
    Acknowledged,
}

/// One socket's protocol state, and for each subscription started and not
/// yet completed, by id, what the socket keeps to stop it (`T`).
#[derive(Debug)]
pub struct Session<T> {
    state: State,
    running: HashMap<String, T>,
}

impl<T> Default for Session<T> {
    fn default() -> Self {
        Session::new()
    }
}

impl<T> Session<T> {
    pub fn new() -> Session<T> {
        Session { state: State::AwaitingInit, running: HashMap::new() }
    }

    pub fn acknowledged(&self) -> bool {
        self.state == State::Acknowledged
    }

    /// The client passed the connection_init check.
    pub fn acknowledge(&mut self) {
        self.state = State::Acknowledged;
    }

    /// The subscription of a [`Step::Start`] runs, stopped through `running`.
    pub fn started(&mut self, id: String, running: T) {
        self.running.insert(id, running);
    }

    /// What the running subscription `id` keeps, if it runs.
    pub fn get(&self, id: &str) -> Option<&T> {
        self.running.get(id)
    }

    /// The server completed (or failed) the subscription `id`: its id is free again.
    pub fn finished(&mut self, id: &str) -> Option<T> {
        self.running.remove(id)
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// A text message from the client.
    pub fn on_text(&mut self, text: &str) -> Step<T> {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(error) => return Step::Close(Close::new(close_code::BAD_REQUEST, &format!("Invalid message received: {error}"))),
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.state != State::AwaitingInit {
                    return Step::Close(Close::new(close_code::TOO_MANY_INITS, "Too many initialisation requests"));
                }
                self.state = State::Initialising;
                Step::Init(payload.unwrap_or_default())
            }
            ClientMessage::Ping { payload } => Step::Pong(payload),
            ClientMessage::Pong { .. } => Step::Nothing,
            ClientMessage::Subscribe { id, payload } => {
                if self.state != State::Acknowledged {
                    return Step::Close(Close::new(close_code::UNAUTHORIZED, "Unauthorized"));
                }
                if self.running.contains_key(&id) {
                    return Step::Close(Close::new(close_code::SUBSCRIBER_EXISTS, &format!("Subscriber for {id} already exists")));
                }
                Step::Start { id, payload }
            }
            ClientMessage::Complete { id } => match self.running.remove(&id) {
                Some(running) => Step::Stop { id, running },
                None => Step::Nothing,
            },
        }
    }

    /// A binary message: the protocol's messages are text.
    pub fn on_binary(&mut self, bytes: &[u8]) -> Step<T> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.on_text(text),
            Err(_) => Step::Close(Close::new(close_code::BAD_REQUEST, "Invalid message received: not UTF-8 text")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the tests keep per subscription: nothing.
    type Session = super::Session<()>;
    type Step = super::Step<()>;

    /// Starts the subscription a step asks for, as the socket does.
    fn start(session: &mut Session, step: Step) -> Step {
        if let Step::Start { id, .. } = &step {
            session.started(id.clone(), ());
        }
        step
    }

    fn acknowledged() -> Session {
        let mut session = Session::new();
        assert!(matches!(session.on_text(r#"{"type":"connection_init","payload":{"Authorization":"Bearer x"}}"#), Step::Init(_)));
        session.acknowledge();
        session
    }

    fn closed_with(step: Step) -> u16 {
        match step {
            Step::Close(close) => close.code,
            other => panic!("expected a close, got {other:?}"),
        }
    }

    #[test]
    fn the_protocol_s_mistakes_close_with_its_codes() {
        let mut session = Session::new();
        assert_eq!(closed_with(session.on_text(r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { x }"}}"#)), close_code::UNAUTHORIZED);
        assert_eq!(closed_with(Session::new().on_text("not json")), close_code::BAD_REQUEST);
        assert_eq!(closed_with(Session::new().on_text(r#"{"type":"no_such_type"}"#)), close_code::BAD_REQUEST);
        assert_eq!(closed_with(Session::new().on_text(r#"{"type":"subscribe","id":"1"}"#)), close_code::BAD_REQUEST, "a subscribe without a payload");
        assert_eq!(closed_with(Session::new().on_binary(&[0xff, 0xfe])), close_code::BAD_REQUEST);
        let mut session = acknowledged();
        assert_eq!(closed_with(session.on_text(r#"{"type":"connection_init"}"#)), close_code::TOO_MANY_INITS);
        let mut session = acknowledged();
        let subscribe = r#"{"type":"subscribe","id":"a","payload":{"query":"subscription { x }"}}"#;
        let step = session.on_text(subscribe);
        assert!(matches!(start(&mut session, step), Step::Start { ref id, .. } if id == "a"));
        assert_eq!(closed_with(session.on_text(subscribe)), close_code::SUBSCRIBER_EXISTS);
        // The reason quotes the id: a long one of two-byte characters is cut at a character.
        let mut session = acknowledged();
        let long = format!(r#"{{"type":"subscribe","id":"{}","payload":{{"query":"subscription {{ x }}"}}}}"#, "é".repeat(300));
        let step = session.on_text(&long);
        assert!(matches!(start(&mut session, step), Step::Start { .. }));
        match session.on_text(&long) {
            Step::Close(close) => {
                assert!(close.code == close_code::SUBSCRIBER_EXISTS && close.reason.len() <= CLOSE_REASON_BYTES_MAX && close.reason.len() >= 120)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_are_free_again_once_their_subscription_ends() {
        let mut session = acknowledged();
        let subscribe = r#"{"type":"subscribe","id":"a","payload":{"query":"subscription { x }"}}"#;
        let step = session.on_text(subscribe);
        assert!(matches!(start(&mut session, step), Step::Start { .. }));
        assert_eq!(session.on_text(r#"{"type":"complete","id":"a"}"#), Step::Stop { id: "a".into(), running: () });
        assert_eq!(session.on_text(r#"{"type":"complete","id":"a"}"#), Step::Nothing, "a second complete is nothing");
        let step = session.on_text(subscribe);
        assert!(matches!(start(&mut session, step), Step::Start { .. }));
        assert_eq!(session.finished("a"), Some(()));
        assert_eq!(session.running(), 0);
        let step = session.on_text(subscribe);
        assert!(matches!(start(&mut session, step), Step::Start { .. }));
    }

    #[test]
    fn pings_are_answered_with_their_payload() {
        let mut session = Session::new();
        assert_eq!(session.on_text(r#"{"type":"ping","payload":{"n":1}}"#), Step::Pong(Some(serde_json::json!({ "n": 1 }))));
        assert_eq!(session.on_text(r#"{"type":"pong"}"#), Step::Nothing);
    }

    proptest! {
        /// Whatever a client sends, a close's reason fits its frame: the
        /// gateway once sent 126 bytes, which clients reject as a bad frame.
        #[test]
        fn any_message_gets_a_step_and_closes_fit_their_frame(text in prop_oneof![
            any::<String>(),
            "\\{\"type\":\"(connection_init|ping|pong|subscribe|complete|[a-z_]{0,200})\"(,\"id\":\"[^\"]{0,300}\")?(,\"payload\":\\{\\})?\\}",
        ], acknowledge in any::<bool>()) {
            let mut session = if acknowledge { acknowledged() } else { Session::new() };
            for _ in 0..2 {
                let step = session.on_text(&text);
                if let Step::Close(close) = start(&mut session, step) {
                    prop_assert!(close.reason.len() <= CLOSE_REASON_BYTES_MAX, "{} bytes", close.reason.len());
                    prop_assert!((4400..=4499).contains(&close.code), "{}", close.code);
                }
            }
        }
    }
}
