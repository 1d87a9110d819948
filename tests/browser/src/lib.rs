//! The browser suite: `tests/browser.rs` starts a whole Marionette with the
//! built console and runs the Playwright tests in `e2e/` against it.
