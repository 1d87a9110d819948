// The organiser's webhooks: where each gift and payout is posted, its
// signing secret (shown once, when the endpoint is set), and how each
// delivery went, with a way to send one again as it was.
import { useState } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, ErrorMessage, Field, TableHead, When, useQuery, useSubmit, words } from '../components';
import { Confirm } from '../donations';
import { graphql } from '../graphql';

const WebhookQuery = graphql(`
  query DonationWebhook {
    donationWebhook { url createdAt }
    donationWebhookDeliveries(limit: 50) {
      eventId type state attempts lastStatus lastError createdAt nextAttemptAt deliveredAt body
    }
  }
`);

const SetWebhookMutation = graphql(`
  mutation SetDonationWebhook($url: String!) {
    setDonationWebhook(url: $url) { url secret }
  }
`);

const RemoveWebhookMutation = graphql(`
  mutation RemoveDonationWebhook {
    removeDonationWebhook
  }
`);

const RedeliverMutation = graphql(`
  mutation RedeliverDonationWebhook($eventId: String!) {
    redeliverDonationWebhook(eventId: $eventId) { eventId state }
  }
`);

export function OrganiserWebhooks() {
  const { data, error, reload } = useQuery(WebhookQuery, {}, { refreshMs: 5_000 });
  const [url, setUrl] = useState('');
  const [secret, setSecret] = useState<string | null>(null);
  const [body, setBody] = useState<string | null>(null);
  const { busy, error: setError, submit } = useSubmit();
  const set = submit(async () => {
    setSecret(null);
    const made = (await request(SetWebhookMutation, { url: url.trim() })).setDonationWebhook;
    setSecret(made.secret);
    setUrl('');
    reload();
  });
  const endpoint = data?.donationWebhook;
  const deliveries = data?.donationWebhookDeliveries ?? [];
  return (
    <>
      <ErrorMessage error={error} />
      <p className="muted">
        Each gift (<code>donation.received</code>) and payout (<code>payout.made</code>) is posted as JSON to your endpoint, signed as the Standard Webhooks
        specification says: check the <code>webhook-signature</code> header with your secret (its libraries do), and drop an event whose{' '}
        <code>webhook-id</code> you have already seen, since a delivery may come more than once. Deliveries are retried with growing waits for about two days
        until your endpoint answers 2xx.
      </p>
      {endpoint ? (
        <dl className="facts" data-testid="webhook-endpoint">
          <dt>Endpoint</dt>
          <dd>
            <code>{endpoint.url}</code>
          </dd>
          <dt>Set</dt>
          <dd>
            <When at={endpoint.createdAt} />
          </dd>
        </dl>
      ) : (
        <p>No endpoint: nothing is posted.</p>
      )}
      {secret ? (
        <div role="status" className="secret">
          <p>Your signing secret is shown only this once: copy it into your receiver now. Setting the endpoint again makes a new one.</p>
          <code data-testid="webhook-secret">{secret}</code>
        </div>
      ) : null}
      <Form onSubmit={set} aria-label="Set your webhook endpoint">
        <Field
          label={endpoint ? 'New endpoint URL' : 'Endpoint URL'}
          name="webhookUrl"
          isRequired
          value={url}
          onChange={setUrl}
          description="https://, on a public address"
          validate={(v) => (v && !/^https?:\/\//i.test(v.trim()) ? 'An absolute URL: https://…' : null)}
        />
        <Button type="submit" isDisabled={busy} className="react-aria-Button primary">
          {busy ? 'Working…' : endpoint ? 'Replace endpoint and secret' : 'Set endpoint'}
        </Button>
        <ErrorMessage error={setError} />
      </Form>
      {endpoint ? (
        <Confirm
          label="Remove your webhook endpoint"
          danger
          question="Remove the endpoint? Nothing more is posted, and what is waiting to be delivered is given up."
          confirm={() => (
            <ActionButton action={() => request(RemoveWebhookMutation, {})} onDone={reload} className="danger">
              Yes, remove it
            </ActionButton>
          )}
        >
          Remove endpoint…
        </Confirm>
      ) : null}
      <h3>Deliveries</h3>
      {deliveries.length ? (
        <table className="data" aria-label="Webhook deliveries">
          <TableHead columns={['Event', 'Type', 'State', ['Attempts', 'number'], 'Last answer', 'When']} actions />
          <tbody>
            {deliveries.map((d) => (
              <tr key={d.eventId} data-event-id={d.eventId}>
                <th scope="row">
                  <code>{d.eventId}</code>
                </th>
                <td>{d.type}</td>
                <td data-testid="delivery-state">{words(d.state)}</td>
                <td className="number">{d.attempts}</td>
                <td data-testid="delivery-answer">{d.lastStatus != null ? `HTTP ${d.lastStatus}` : (d.lastError ?? '')}</td>
                <td>
                  {d.deliveredAt ? (
                    <>
                      delivered <When at={d.deliveredAt} />
                    </>
                  ) : d.nextAttemptAt ? (
                    <>
                      next try <When at={d.nextAttemptAt} />
                    </>
                  ) : (
                    'given up'
                  )}
                </td>
                <td>
                  <div className="row-actions">
                    <Button onPress={() => setBody(body === d.eventId ? null : d.eventId)} aria-label={`Body of ${d.eventId}`} aria-expanded={body === d.eventId}>
                      {body === d.eventId ? 'Hide' : 'Body'}
                    </Button>
                    {d.state !== 'PENDING' ? (
                      <ActionButton action={() => request(RedeliverMutation, { eventId: d.eventId })} onDone={reload} label={`Send ${d.eventId} again`}>
                        Send again
                      </ActionButton>
                    ) : null}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>No deliveries yet.</p>
      )}
      {body ? (
        <pre className="webhook-body" aria-label={`Posted body of ${body}`} tabIndex={0}>
          {pretty(deliveries.find((d) => d.eventId === body)?.body ?? '')}
        </pre>
      ) : null}
    </>
  );
}

/// A body as posted, indented to read; as it is if it is not JSON.
function pretty(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}
