//! Two-factor authentication (TOTP) for the caller's own account: enrol,
//! confirm with a first code (the recovery codes are shown then, once),
//! turn off with a fresh code. What needs a code once it is on (login, a
//! withdrawal) asks through [`require_code`].

use std::time::Instant;

use async_graphql::{Context, Error, Object, SimpleObject};

use ledger_api::operators::SecurityEvent;

use super::{caller, caller_id, coded, now_ms, services, user_error};
use crate::two_factor::{CodeRefusal, TwoFactorError};

/// What an authenticator app needs, shown once at enrolment.
#[derive(SimpleObject)]
pub struct TwoFactorEnrolment {
    /// The secret in base32, to type in by hand.
    pub secret: String,
    /// `otpauth://totp/…`, what the QR code holds.
    pub uri: String,
    /// The QR code of `uri`, an SVG document.
    pub qr_code_svg: String,
}

pub(crate) fn two_factor_error(error: TwoFactorError) -> Error {
    tracing::error!(%error, "two-factor store failed");
    coded("UNAVAILABLE", "two-factor authentication is unavailable; try again")
}

fn code_refused(refusal: CodeRefusal) -> Error {
    match refusal {
        CodeRefusal::Malformed => coded("BAD_USER_INPUT", refusal.to_string()),
        CodeRefusal::Wrong | CodeRefusal::Replayed => coded("UNAUTHENTICATED", refusal.to_string()),
    }
}

/// An operator's two-factor turned on or off goes in the audit log: what
/// the other operators look for when one's password may have leaked.
fn record_if_operator(ctx: &Context<'_>, user: u64, enabled: bool) {
    if caller(ctx).is_ok_and(|claims| claims.role == crate::users::Role::Operator) {
        super::operators::record(&services(ctx).ledger, SecurityEvent::TwoFactor { user, enabled });
    }
}

/// Code guesses on one account share a bucket (apart from its password's),
/// whichever mutation they come through.
fn throttle_key(user: u64) -> String {
    format!("two-factor:{user}")
}

/// When `user` has two-factor on, a fresh code (or a recovery code) must
/// come with what they ask: TWO_FACTOR_REQUIRED without one. Attempts are
/// throttled per account like password guesses.
pub(crate) async fn require_code(ctx: &Context<'_>, user: u64, code: Option<&str>) -> Result<(), Error> {
    let services = services(ctx);
    if !services.two_factor.enabled(user).map_err(two_factor_error)? {
        return Ok(());
    }
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Err(coded("TWO_FACTOR_REQUIRED", "this account has two-factor authentication: send twoFactorCode, the code the app shows now"));
    };
    let ip = super::accounts::client_ip(ctx);
    services.logins.attempt(ip, &throttle_key(user), Instant::now()).map_err(super::accounts::refused)?;
    services.two_factor.verify(user, code, now_ms() / 1_000).map_err(two_factor_error)?.map_err(|refusal| {
        tracing::warn!(event = "two_factor_refused", user, %ip, %refusal, "a two-factor code was refused");
        code_refused(refusal)
    })
}

#[derive(Default)]
pub struct TwoFactorMutation;

#[Object]
impl TwoFactorMutation {
    /// Starts two-factor enrolment: a new secret for an authenticator app.
    /// Needs the account's password; nothing changes for login until
    /// `confirmTwoFactor`. Enrolling again before confirming replaces the secret.
    /// Operators must enrol: until they confirm, their operator actions
    /// answer TWO_FACTOR_ENROLMENT_REQUIRED.
    async fn enrol_two_factor(&self, ctx: &Context<'_>, password: String) -> Result<TwoFactorEnrolment, Error> {
        let services = services(ctx);
        let id = caller_id(ctx)?;
        let user = services.users.by_id(id).map_err(user_error)?.ok_or_else(|| coded("UNAUTHENTICATED", "the account no longer exists"))?;
        super::accounts::check_password(ctx, &user, password).await?;
        let started = services.two_factor.start(id, &user.email, now_ms()).map_err(two_factor_error)?;
        let started = started.ok_or_else(|| coded("DUPLICATE", "two-factor authentication is on already; turn it off first (disableTwoFactor)"))?;
        tracing::info!(event = "two_factor_started", user = id, "two-factor enrolment started");
        Ok(TwoFactorEnrolment { secret: started.secret, uri: started.uri, qr_code_svg: started.qr_code_svg })
    }

    /// Confirms enrolment with the code the app shows; from now on login
    /// and withdrawals need a code. Answers ten one-use recovery codes, shown
    /// only this once: keep them apart from the phone.
    async fn confirm_two_factor(&self, ctx: &Context<'_>, code: String) -> Result<Vec<String>, Error> {
        let services = services(ctx);
        let id = caller_id(ctx)?;
        let ip = super::accounts::client_ip(ctx);
        services.logins.attempt(ip, &throttle_key(id), Instant::now()).map_err(super::accounts::refused)?;
        match services.two_factor.confirm(id, &code, now_ms() / 1_000).map_err(two_factor_error)? {
            Ok(codes) => {
                tracing::info!(event = "two_factor_enabled", user = id, "two-factor authentication turned on");
                record_if_operator(ctx, id, true);
                Ok(codes)
            }
            Err(None) => Err(coded("NOT_FOUND", "no two-factor enrolment is waiting: call enrolTwoFactor first")),
            Err(Some(refusal)) => Err(code_refused(refusal)),
        }
    }

    /// Turns two-factor authentication off, given a fresh code or a recovery code.
    async fn disable_two_factor(&self, ctx: &Context<'_>, code: String) -> Result<bool, Error> {
        let services = services(ctx);
        let id = caller_id(ctx)?;
        if !services.two_factor.enabled(id).map_err(two_factor_error)? {
            return Err(coded("NOT_FOUND", "two-factor authentication is not on"));
        }
        require_code(ctx, id, Some(&code)).await?;
        services.two_factor.remove(id).map_err(two_factor_error)?;
        tracing::info!(event = "two_factor_disabled", user = id, "two-factor authentication turned off");
        record_if_operator(ctx, id, false);
        Ok(true)
    }
}
