//! Organisers' webhooks: the endpoint their gifts and payouts are posted
//! to, its secret (shown once), and how each delivery went. The outbox
//! itself is [`crate::webhooks`].

use async_graphql::{Context, Enum, Error, Object, SimpleObject};

use super::donations::organiser_of;
use super::{at, caller_id, coded, now_ms, services, DateTime};
use crate::webhooks::{Delivery, DeliveryState, WebhookError};

const DELIVERIES_LISTED_MAX: usize = 200;

/// Where an organiser's webhooks go.
#[derive(SimpleObject)]
pub struct DonationWebhook {
    pub url: String,
    pub created_at: DateTime,
}

/// A new endpoint and its signing secret, shown this once: keep it to check
/// the `webhook-signature` header (Standard Webhooks, HMAC-SHA256).
#[derive(SimpleObject)]
pub struct DonationWebhookSecret {
    pub url: String,
    /// `whsec_` and the key in base64, as Standard Webhooks' libraries take it.
    pub secret: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum WebhookDeliveryState {
    /// Still to be delivered: the next attempt is due at `nextAttemptAt`.
    Pending,
    Delivered,
    /// Given up after the attempts allowed; redeliverDonationWebhook sends it again.
    Failed,
}

/// One event to the organiser and how its delivery went.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    /// The `webhook-id` header: the same for every attempt at this event.
    pub event_id: String,
    /// `donation.received` or `payout.made`.
    pub r#type: String,
    /// The JSON body, exactly as posted.
    pub body: String,
    pub state: WebhookDeliveryState,
    pub attempts: i32,
    /// The receiver's last status, when it answered.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime,
    pub next_attempt_at: Option<DateTime>,
    pub delivered_at: Option<DateTime>,
}

fn api_delivery(d: &Delivery) -> WebhookDelivery {
    WebhookDelivery {
        event_id: d.event_id.clone(),
        r#type: d.kind.name().into(),
        body: String::from_utf8_lossy(&d.body).into_owned(),
        state: match d.state {
            DeliveryState::Pending => WebhookDeliveryState::Pending,
            DeliveryState::Delivered => WebhookDeliveryState::Delivered,
            DeliveryState::Failed => WebhookDeliveryState::Failed,
        },
        attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
        last_status: d.last_status.map(i32::from),
        last_error: d.last_error.clone(),
        created_at: at(d.created_ms),
        next_attempt_at: (d.state == DeliveryState::Pending).then(|| at(d.next_attempt_ms)),
        delivered_at: d.delivered_ms.map(at),
    }
}

fn webhook_error(error: WebhookError) -> Error {
    match error {
        WebhookError::BadEndpoint(message) => coded("BAD_USER_INPUT", message),
        WebhookError::NotFound => coded("NOT_FOUND", "no delivery of that event id to you"),
        other => {
            tracing::error!(error = %other, "webhook store");
            coded("UNAVAILABLE", "the webhook store failed; try again (the operators have the details in the gateway's log)")
        }
    }
}

/// The caller, a verified organiser.
async fn organiser(ctx: &Context<'_>) -> Result<u64, Error> {
    let user = caller_id(ctx)?;
    if organiser_of(ctx, user).await?.is_none() {
        return Err(coded("FORBIDDEN", "webhooks are for verified organisers: the operators verify you (setOrganiser)"));
    }
    Ok(user)
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// The organiser's webhook endpoint, if they set one.
    async fn donation_webhook(&self, ctx: &Context<'_>) -> Result<Option<DonationWebhook>, Error> {
        let user = organiser(ctx).await?;
        let endpoint = services(ctx).webhooks.endpoint(user).map_err(webhook_error)?;
        Ok(endpoint.map(|e| DonationWebhook { url: e.url, created_at: at(e.created_ms) }))
    }

    /// The organiser's webhook deliveries, newest first (at most 200).
    async fn donation_webhook_deliveries(&self, ctx: &Context<'_>, limit: Option<i32>) -> Result<Vec<WebhookDelivery>, Error> {
        let user = organiser(ctx).await?;
        let limit = usize::try_from(limit.unwrap_or(50)).unwrap_or(0).clamp(1, DELIVERIES_LISTED_MAX);
        Ok(services(ctx).webhooks.deliveries(user, limit).map_err(webhook_error)?.iter().map(api_delivery).collect())
    }
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Sets (or replaces) where the organiser's gifts and payouts are
    /// posted, with a new secret: events from now on, and those pending,
    /// go there signed with it. https on a public address, unless the
    /// operators allow otherwise.
    async fn set_donation_webhook(&self, ctx: &Context<'_>, url: String) -> Result<DonationWebhookSecret, Error> {
        let user = organiser(ctx).await?;
        let secret = services(ctx).webhooks.set_endpoint(user, url.trim(), now_ms()).map_err(webhook_error)?;
        tracing::info!(organiser = user, url = url.trim(), "webhook endpoint set");
        Ok(DonationWebhookSecret { url: url.trim().to_string(), secret })
    }

    /// Stops the organiser's webhooks; what is pending is given up. False when there was none.
    async fn remove_donation_webhook(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        let user = organiser(ctx).await?;
        services(ctx).webhooks.remove_endpoint(user).map_err(webhook_error)
    }

    /// Sends an event again, as it was (same id, same body), from now.
    async fn redeliver_donation_webhook(&self, ctx: &Context<'_>, event_id: String) -> Result<WebhookDelivery, Error> {
        let user = organiser(ctx).await?;
        if services(ctx).webhooks.endpoint(user).map_err(webhook_error)?.is_none() {
            return Err(coded("BAD_USER_INPUT", "set a webhook endpoint first (setDonationWebhook)"));
        }
        Ok(api_delivery(&services(ctx).webhooks.redeliver(user, &event_id, now_ms()).map_err(webhook_error)?))
    }
}
