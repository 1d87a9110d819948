//! What the packaging tests (`tests/`) share: the repository's place, host
//! commands, and the `.deb` build. The units live in `systemd/` at the
//! repository root, the Debian packaging in `debian/`, the host image in `image/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repository() -> PathBuf {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("../..")
}

pub fn run_host(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Runs a command on the host; its stdout, or a panic with everything it said.
pub fn check_host(program: &str, args: &[&str]) -> String {
    let output = run_host(program, args);
    assert!(output.status.success(), "{program} {args:?} failed:\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds and lintian-checks the packages (scripts/build-debs) into `out`;
/// the names of those an operator installs (not the -dbgsym ones), sorted.
pub fn build_debs(out: &Path) -> Vec<String> {
    let build = Command::new(repository().join("scripts/build-debs")).arg("--out").arg(out).output().unwrap();
    assert!(build.status.success(), "scripts/build-debs failed:\n{}{}", String::from_utf8_lossy(&build.stdout), String::from_utf8_lossy(&build.stderr));
    let mut built: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|name| !name.contains("-dbgsym_")).collect();
    built.sort();
    assert_eq!(built.len(), 7, "one package per daemon, common, tools, the console and the metapackage: {built:?}");
    built
}

/// Runs `command` with `stdin` written to its input; its status and output.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The stdout of a command that must have succeeded; else a panic with `what` and all it said.
pub fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Enrols the operator logged in with marionettectl (`session`: "" or
/// "--session FILE") in two-factor authentication, as the shipped config
/// requires before any operator action, the way an operator does it with
/// an app: `ok_with(script, stdin)` runs a script on the machine and
/// answers its stdout. The secret (base32) and the ten recovery codes.
pub fn enrol_operator(ok_with: impl Fn(&str, &str) -> String, session: &str, password: &str) -> (String, Vec<String>) {
    let enrolment = ok_with(&format!("marionettectl {session} two-factor enrol"), &format!("{password}\n"));
    let secret = enrolment.lines().find_map(|line| line.strip_prefix("secret ")).unwrap_or_else(|| panic!("no secret in: {enrolment}")).trim().to_string();
    let bytes = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap_or_else(|e| panic!("not base32 ({e:?}): {secret}"));
    let code =
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate_current().expect("the clock is after 1970");
    let recovery_codes: Vec<String> = ok_with(&format!("marionettectl {session} two-factor confirm {code}"), "").lines().map(str::to_string).collect();
    assert_eq!(recovery_codes.len(), 10, "ten recovery codes: {recovery_codes:?}");
    (secret, recovery_codes)
}
