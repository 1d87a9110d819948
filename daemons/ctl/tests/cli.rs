//! marionettectl's own behaviour without a gateway: usage, refusals, and a
//! clear error when the admin socket is not there. (Against a running
//! gateway it is exercised by daemons/gateway/tests/api.rs.)

use std::process::Command;

fn ctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_marionettectl")).args(args).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn usage_mistakes_and_a_missing_socket() {
    let (code, out, _) = ctl(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("create-market BASE QUOTE"), "{out}");
    let (code, _, err) = ctl(&["create-asset", "BTC"]);
    assert_eq!(code, 1);
    assert!(err.contains("usage"), "{err}");
    let (code, _, err) = ctl(&["--socket", "/nonexistent/admin.sock", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot open the admin socket /nonexistent/admin.sock"), "{err}");
    let (code, _, err) = ctl(&["--socket", "/nonexistent/admin.sock", "create-asset", "BTC", "eight"]);
    assert_eq!(code, 1);
    assert!(err.contains("SCALE"), "{err}");
}
