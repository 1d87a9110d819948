//! `marionette-gateway`: the public GraphQL API. Authentication and accounts
//! live here ([`auth`], [`users`]); money, orders and history live in the
//! ledger, reached over the wire protocol ([`ledger_client`]); [`api`] is
//! the schema and [`http`] serves it, beside the web console ([`console`]).

pub mod address_book;
pub mod addresses;
pub mod admin;
pub mod api;
pub mod api_keys;
pub mod auth;
pub mod config;
pub mod console;
pub mod documents;
pub mod feed;
pub mod forwarded;
pub mod http;
pub mod ledger_client;
pub mod limits;
pub mod logins;
pub mod matching_client;
pub mod origin;
pub mod per_ip;
pub mod pricing;
pub mod ratelimit;
pub mod rest;
pub mod sessions;
pub mod tls;
pub mod two_factor;
pub mod units;
pub mod users;
pub mod webhooks;
pub mod ws;
