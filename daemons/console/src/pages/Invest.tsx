// The investor's pages: the offerings open to subscribe, their own
// subscriptions (cancel until the cut-off), what they hold of each token
// with the tranches still vesting, and the distributions owed to them.
import { useState } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit, words } from '../components';
import { formatDecimal, formatPercent, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';

const InvestQuery = graphql(`
  query Invest {
    tokens { symbol decimals lotSize supply documentUrl documentHash }
    offerings(limit: 100) {
      id token paymentAsset price softCap hardCap minSubscription maxSubscription startsAt endsAt cancelUntil status subscribed
      vesting { tranches periodSeconds start }
    }
    mySubscriptions(limit: 100) { id offeringId token amount payment paymentAsset status allocated paid refunded createdAt }
    myVesting(limit: 200) { subscriptionId token amount vestsAt vested }
    myEntitlements(limit: 100) { distributionId token paymentAsset units gross withholdingRate withheld net claimUntil claimedAt reclaimed }
    myInvestorClaims { country category expiresAt withholdingRate }
    balances { asset available locked }
  }
`);

const SubscribeMutation = graphql(`
  mutation Subscribe($offeringId: ID!, $amount: Decimal!, $idempotencyKey: String!) {
    subscribe(offeringId: $offeringId, amount: $amount, idempotencyKey: $idempotencyKey) { id amount payment paymentAsset status }
  }
`);

const CancelMutation = graphql(`
  mutation CancelSubscription($subscriptionId: ID!) {
    cancelSubscription(subscriptionId: $subscriptionId) { id status refunded }
  }
`);

const ClaimMutation = graphql(`
  mutation ClaimDistribution($distributionId: ID!) {
    claimDistribution(distributionId: $distributionId) { distributionId net withheld claimedAt }
  }
`);

type Data = ResultOf<typeof InvestQuery>;
type OfferingRow = Data['offerings'][number];

export function Invest() {
  // Asked again every few seconds: the ledger's clock closes offerings, vests tranches and records distributions.
  const { data, error, reload } = useQuery(InvestQuery, undefined, { refreshMs: 5_000 });
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="offerings" />}</main>;
  const open = data.offerings.filter((o) => o.status === 'OPEN');
  return (
    <main>
      <h1>Invest</h1>
      <ErrorMessage error={error} />
      <Claims claims={data.myInvestorClaims} />
      <Panel title="Offerings" id="offerings">
        <Offerings offerings={data.offerings} tokens={data.tokens} />
        {open.length ? <SubscribeForm offerings={open} tokens={data.tokens} onDone={reload} /> : <p>No offering is open now.</p>}
      </Panel>
      <Panel title="Your subscriptions" id="my-subscriptions">
        <Subscriptions data={data} onDone={reload} />
      </Panel>
      <Panel title="Your portfolio" id="portfolio">
        <Portfolio data={data} />
      </Panel>
      <Panel title="Your distributions" id="my-distributions">
        <Entitlements entitlements={data.myEntitlements} onDone={reload} />
      </Panel>
    </main>
  );
}

function Claims({ claims }: { claims: Data['myInvestorClaims'] }) {
  if (!claims) {
    return <p className="muted">You are not a verified investor yet: the operators set your investor claims (country, category) before you can subscribe.</p>;
  }
  return (
    <p className="muted" data-testid="my-claims">
      Verified investor from {claims.country}, {words(claims.category)}, until <When at={claims.expiresAt} />; tax withheld from your distributions:{' '}
      {formatPercent(claims.withholdingRate, 2)}.
    </p>
  );
}

function Offerings({ offerings, tokens }: { offerings: Data['offerings']; tokens: Data['tokens'] }) {
  if (!offerings.length) return <p>No offerings yet.</p>;
  return (
    <table className="data" aria-label="Offerings">
      <TableHead columns={['Token', ['Price', 'number'], ['Subscribed', 'number'], ['Target', 'number'], ['Hard cap', 'number'], 'Ends', 'Vesting', 'Status', 'Document']} />
      <tbody>
        {offerings.map((o) => {
          const token = tokens.find((t) => t.symbol === o.token);
          return (
            <tr key={o.id} data-testid={`offering-${o.id}`}>
              <td>{o.token}</td>
              <td className="number">
                {formatDecimal(o.price)} {o.paymentAsset}
              </td>
              <td className="number">{formatDecimal(o.subscribed)}</td>
              <td className="number">{formatDecimal(o.softCap)}</td>
              <td className="number">{formatDecimal(o.hardCap)}</td>
              <td>
                <When at={o.endsAt} />
              </td>
              <td>{o.vesting ? `${o.vesting.tranches} tranches, every ${o.vesting.periodSeconds} s` : 'none'}</td>
              <td>{words(o.status)}</td>
              <td>{token ? <a href={token.documentUrl}>offering document</a> : '—'}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function SubscribeForm({ offerings, tokens, onDone }: { offerings: OfferingRow[]; tokens: Data['tokens']; onDone: () => void }) {
  const [offeringId, setOfferingId] = useState(offerings[0].id);
  const [amount, setAmount] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const offering = offerings.find((o) => o.id === offeringId) ?? offerings[0];
  const decimals = tokens.find((t) => t.symbol === offering.token)?.decimals;
  const run = submit(async () => {
    setSaid(null);
    const answer = (await request(SubscribeMutation, { offeringId: offering.id, amount: amount.trim(), idempotencyKey: newIdempotencyKey() })).subscribe;
    setSaid(`Subscribed for ${formatDecimal(answer.amount)} ${offering.token}: ${formatDecimal(answer.payment)} ${answer.paymentAsset} held in escrow until the close.`);
    setAmount('');
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label="Subscribe">
      <Choice
        label="Offering"
        options={offerings.map((o): [string, string] => [o.id, `${o.token} at ${formatDecimal(o.price)} ${o.paymentAsset}`])}
        value={offering.id}
        onChange={setOfferingId}
      />
      <Field
        label={`Amount (${offering.token})`}
        name="amount"
        isRequired
        inputMode="decimal"
        value={amount}
        onChange={setAmount}
        description={`From ${formatDecimal(offering.minSubscription)} to ${formatDecimal(offering.maxSubscription)}; cancellable until ${new Date(offering.cancelUntil).toLocaleString()}.`}
        validate={(v) => (v === '' || isDecimal(v, decimals) ? null : `An amount with at most ${decimals ?? 0} decimals`)}
      />
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" className="primary" isDisabled={busy}>
        {busy ? 'Subscribing…' : 'Subscribe'}
      </Button>
    </Form>
  );
}

function Subscriptions({ data, onDone }: { data: Data; onDone: () => void }) {
  if (!data.mySubscriptions.length) return <p>No subscriptions yet.</p>;
  return (
    <table className="data" aria-label="Your subscriptions">
      <TableHead columns={['Token', ['Amount', 'number'], ['Held', 'number'], 'Status', ['Allocated', 'number'], ['Paid', 'number'], ['Refunded', 'number']]} actions />
      <tbody>
        {data.mySubscriptions.map((s) => {
          const offering = data.offerings.find((o) => o.id === s.offeringId);
          const cancellable = s.status === 'OPEN' && offering && Date.now() < Date.parse(offering.cancelUntil);
          return (
            <tr key={s.id} data-testid={`subscription-${s.id}`}>
              <td>{s.token}</td>
              <td className="number">{formatDecimal(s.amount)}</td>
              <td className="number">
                {formatDecimal(s.payment)} {s.paymentAsset}
              </td>
              <td>{words(s.status)}</td>
              <td className="number">{formatDecimal(s.allocated)}</td>
              <td className="number">{formatDecimal(s.paid)}</td>
              <td className="number">{formatDecimal(s.refunded)}</td>
              <td>
                {cancellable ? (
                  <ActionButton action={() => request(CancelMutation, { subscriptionId: s.id })} onDone={onDone} label={`Cancel the subscription to ${s.token}`}>
                    Cancel
                  </ActionButton>
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function Portfolio({ data }: { data: Data }) {
  const symbols = new Set(data.tokens.map((t) => t.symbol));
  const held = data.balances.filter((b) => symbols.has(b.asset));
  const vesting = data.myVesting.filter((t) => !t.vested);
  if (!held.length && !vesting.length) return <p>You hold no tokens yet.</p>;
  return (
    <>
      <table className="data" aria-label="Your tokens">
        <TableHead columns={['Token', ['Available', 'number'], ['In orders', 'number']]} />
        <tbody>
          {held.map((b) => (
            <tr key={b.asset} data-testid={`holding-${b.asset}`}>
              <td>{b.asset}</td>
              <td className="number">{formatDecimal(b.available)}</td>
              <td className="number">{formatDecimal(b.locked)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {vesting.length ? (
        <table className="data" aria-label="Vesting tranches">
          <TableHead columns={['Token', ['Amount', 'number'], 'Vests']} />
          <tbody>
            {vesting.map((t, index) => (
              <tr key={`${t.subscriptionId}-${index}`}>
                <td>{t.token}</td>
                <td className="number">{formatDecimal(t.amount)}</td>
                <td>
                  <When at={t.vestsAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {vesting.length ? <p className="muted">Tokens still vesting are yours but can be neither sold nor withdrawn until they vest.</p> : null}
    </>
  );
}

function Entitlements({ entitlements, onDone }: { entitlements: Data['myEntitlements']; onDone: () => void }) {
  if (!entitlements.length) return <p>No distributions owed to you.</p>;
  return (
    <table className="data" aria-label="Your distributions">
      <TableHead columns={['Token', ['Held at the record', 'number'], ['Gross', 'number'], ['Withheld', 'number'], ['Net', 'number'], 'Claim until', 'Status']} actions />
      <tbody>
        {entitlements.map((e) => {
          const claimable = !e.claimedAt && !e.reclaimed && Date.now() < Date.parse(e.claimUntil);
          return (
            <tr key={e.distributionId} data-testid={`entitlement-${e.distributionId}`}>
              <td>{e.token}</td>
              <td className="number">{formatDecimal(e.units)}</td>
              <td className="number">
                {formatDecimal(e.gross)} {e.paymentAsset}
              </td>
              <td className="number">
                {formatDecimal(e.withheld)} ({formatPercent(e.withholdingRate, 2)})
              </td>
              <td className="number">
                {formatDecimal(e.net)} {e.paymentAsset}
              </td>
              <td>
                <When at={e.claimUntil} />
              </td>
              <td>{e.claimedAt ? 'claimed' : e.reclaimed ? 'reclaimed by the issuer' : claimable ? 'to claim' : 'expired'}</td>
              <td>
                {claimable ? (
                  <ActionButton action={() => request(ClaimMutation, { distributionId: e.distributionId })} onDone={onDone} label={`Claim the ${e.token} distribution`}>
                    Claim
                  </ActionButton>
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
