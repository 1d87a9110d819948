// The issuer's pages: create a token and offer it, watch the offering's
// subscriptions until the ledger's clock closes it at its end, declare
// distributions and take back what was not claimed, read the cap table
// (now or at a past time) and act as the token's agent (freeze, forced
// transfer, recovery), which an operator then approves.
import { useState } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit, words } from '../components';
import { formatDecimal, formatPercent } from '../decimal';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';

const IssuerQuery = graphql(`
  query Issuer {
    amIssuer
    assets { symbol scale }
    tokens { symbol decimals lotSize maxSupply supply issuer documentUrl createdAt }
    offerings(limit: 100) { id token paymentAsset price softCap hardCap endsAt status subscribed openSubscriptions issued raised fee feeBps issuer }
    distributions(limit: 100) { id token kind paymentAsset pool recordAt claimUntil status holders entitled remainder claimed withheld reclaimed issuer }
  }
`);

const CreateTokenMutation = graphql(`
  mutation CreateToken($symbol: String!, $decimals: Int!, $lotSize: Decimal!, $maxSupply: Decimal!, $documentHash: String!, $documentUrl: String!, $rules: TokenRulesInput) {
    createToken(symbol: $symbol, decimals: $decimals, lotSize: $lotSize, maxSupply: $maxSupply, documentHash: $documentHash, documentUrl: $documentUrl, rules: $rules) { symbol }
  }
`);

const CreateOfferingMutation = graphql(`
  mutation CreateOffering(
    $token: String!, $paymentAsset: String!, $price: Decimal!, $softCap: Decimal!, $hardCap: Decimal!,
    $minSubscription: Decimal!, $maxSubscription: Decimal!, $endsAt: DateTime!, $cancelCutoffSeconds: Int,
    $vestingPeriodSeconds: Int, $vestingTranches: Int
  ) {
    createOffering(
      token: $token, paymentAsset: $paymentAsset, price: $price, softCap: $softCap, hardCap: $hardCap,
      minSubscription: $minSubscription, maxSubscription: $maxSubscription, endsAt: $endsAt, cancelCutoffSeconds: $cancelCutoffSeconds,
      vestingPeriodSeconds: $vestingPeriodSeconds, vestingTranches: $vestingTranches
    ) { id token }
  }
`);

const SubscriptionsQuery = graphql(`
  query OfferingSubscriptions($offeringId: ID!) {
    offeringSubscriptions(offeringId: $offeringId, limit: 1000) { id investor amount payment paymentAsset status allocated refunded createdAt }
  }
`);

const CapTableQuery = graphql(`
  query CapTable($token: String!, $at: DateTime) {
    capTable(token: $token, at: $at) { user email balance locked frozen share }
  }
`);

const DistributeMutation = graphql(`
  mutation Distribute(
    $token: String!, $kind: DistributionKind!, $paymentAsset: String!, $pool: Decimal!, $recordAt: DateTime!, $claimUntil: DateTime!,
    $defaultWithholdingRate: Decimal!, $idempotencyKey: String!
  ) {
    distribute(
      token: $token, kind: $kind, paymentAsset: $paymentAsset, pool: $pool, recordAt: $recordAt, claimUntil: $claimUntil,
      defaultWithholdingRate: $defaultWithholdingRate, idempotencyKey: $idempotencyKey
    ) { id }
  }
`);

const ReclaimMutation = graphql(`
  mutation ReclaimDistribution($distributionId: ID!) {
    reclaimDistribution(distributionId: $distributionId) { id reclaimed }
  }
`);

const FreezeTokensMutation = graphql(`
  mutation FreezeTokens($token: String!, $email: String!, $amount: Decimal!) {
    freezeTokens(token: $token, email: $email, amount: $amount) { frozen }
  }
`);
const UnfreezeTokensMutation = graphql(`
  mutation UnfreezeTokens($token: String!, $email: String!, $amount: Decimal!) {
    unfreezeTokens(token: $token, email: $email, amount: $amount) { frozen }
  }
`);
const ForceTransferMutation = graphql(`
  mutation ForceTransfer($token: String!, $fromEmail: String!, $toEmail: String!, $amount: Decimal!) {
    forceTransfer(token: $token, fromEmail: $fromEmail, toEmail: $toEmail, amount: $amount) { moved fromFrozen }
  }
`);
const RecoverTokensMutation = graphql(`
  mutation RecoverTokens($token: String!, $lostEmail: String!, $toEmail: String!) {
    recoverTokens(token: $token, lostEmail: $lostEmail, toEmail: $toEmail) { moved tranches }
  }
`);

type Data = ResultOf<typeof IssuerQuery>;

/// An RFC 3339 time `seconds` from now, for forms that ask for a duration.
function inSeconds(seconds: number): string {
  return new Date(Date.now() + seconds * 1000).toISOString();
}

function positiveInteger(text: string): string | null {
  return text === '' || /^[1-9][0-9]{0,8}$/.test(text) ? null : 'A whole number above zero';
}

export function Issuer() {
  const { me } = useSession();
  const { data, error, reload } = useQuery(IssuerQuery, undefined, { refreshMs: 5_000 });
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="your tokens" />}</main>;
  if (!data.amIssuer) {
    return (
      <main>
        <h1>Issue</h1>
        <p>Only issuers create tokens: the operators make an account an issuer after their checks.</p>
      </main>
    );
  }
  const mine = data.tokens.filter((t) => t.issuer === me?.id);
  const offerings = data.offerings.filter((o) => o.issuer === me?.id);
  const distributions = data.distributions.filter((d) => d.issuer === me?.id);
  return (
    <main>
      <h1>Issue</h1>
      <ErrorMessage error={error} />
      <Panel title="Your tokens" id="my-tokens">
        {mine.length ? (
          <table className="data" aria-label="Your tokens">
            <TableHead columns={['Token', 'Decimals', ['Lot', 'number'], ['Issued', 'number'], ['At most', 'number'], 'Created']} />
            <tbody>
              {mine.map((t) => (
                <tr key={t.symbol}>
                  <td>
                    <a href={t.documentUrl}>{t.symbol}</a>
                  </td>
                  <td>{t.decimals}</td>
                  <td className="number">{formatDecimal(t.lotSize)}</td>
                  <td className="number" data-testid={`supply-${t.symbol}`}>
                    {formatDecimal(t.supply)}
                  </td>
                  <td className="number">{formatDecimal(t.maxSupply)}</td>
                  <td>
                    <When at={t.createdAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p>No tokens yet.</p>
        )}
        <CreateToken onDone={reload} />
      </Panel>
      {mine.length ? (
        <>
          <Panel title="Offerings" id="my-offerings">
            <Offerings offerings={offerings} />
            <CreateOffering tokens={mine.map((t) => t.symbol)} assets={data.assets.map((a) => a.symbol).filter((s) => !data.tokens.some((t) => t.symbol === s))} onDone={reload} />
          </Panel>
          <Panel title="Cap table" id="cap-table">
            <CapTable tokens={mine.map((t) => t.symbol)} />
          </Panel>
          <Panel title="Distributions" id="my-distributions">
            <Distributions distributions={distributions} onDone={reload} />
            <Distribute tokens={mine.map((t) => t.symbol)} assets={data.assets.map((a) => a.symbol).filter((s) => !data.tokens.some((t) => t.symbol === s))} onDone={reload} />
          </Panel>
          <Panel title="Agent actions" id="agent">
            <AgentActions tokens={mine.map((t) => t.symbol)} />
          </Panel>
        </>
      ) : null}
    </main>
  );
}

function CreateToken({ onDone }: { onDone: () => void }) {
  const [symbol, setSymbol] = useState('');
  const [decimals, setDecimals] = useState('0');
  const [lot, setLot] = useState('1');
  const [maxSupply, setMaxSupply] = useState('');
  const [url, setUrl] = useState('');
  const [hash, setHash] = useState('');
  const [denied, setDenied] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const run = submit(async () => {
    setSaid(null);
    const deniedCountries = denied.split(/[\s,]+/).filter(Boolean).map(Number);
    const rules = deniedCountries.length ? { deniedCountries } : null;
    const token = (
      await request(CreateTokenMutation, { symbol: symbol.trim(), decimals: Number(decimals), lotSize: lot.trim(), maxSupply: maxSupply.trim(), documentHash: hash.trim(), documentUrl: url.trim(), rules })
    ).createToken;
    setSaid(`Token ${token.symbol} created.`);
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label="Create a token">
      <div className="columns">
        <Field label="Symbol" name="symbol" isRequired value={symbol} onChange={setSymbol} />
        <Field label="Decimals" name="decimals" isRequired inputMode="numeric" value={decimals} onChange={setDecimals} validate={(v) => (/^[0-9]{1,2}$/.test(v) ? null : '0 to 18')} />
        <Field label="Lot size" name="lot" isRequired inputMode="decimal" value={lot} onChange={setLot} />
        <Field label="Maximum supply" name="maxSupply" isRequired inputMode="decimal" value={maxSupply} onChange={setMaxSupply} />
      </div>
      <Field label="Offering document (https link)" name="documentUrl" isRequired value={url} onChange={setUrl} />
      <Field
        label="The document's blake3 hash (64 hex digits)"
        name="documentHash"
        isRequired
        value={hash}
        onChange={setHash}
        validate={(v) => (v === '' || /^[0-9a-f]{64}$/.test(v.trim()) ? null : '64 lowercase hex digits')}
      />
      <Field label="Countries it may not go to (ISO 3166-1 numeric, comma-separated)" name="deniedCountries" value={denied} onChange={setDenied} />
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" className="primary" isDisabled={busy}>
        {busy ? 'Creating…' : 'Create the token'}
      </Button>
    </Form>
  );
}

function Offerings({ offerings }: { offerings: Data['offerings'] }) {
  const [watched, setWatched] = useState<string | null>(null);
  if (!offerings.length) return <p>No offerings yet.</p>;
  return (
    <>
      <table className="data" aria-label="Your offerings">
        <TableHead columns={['Token', ['Price', 'number'], ['Subscribed', 'number'], ['Target', 'number'], ['Hard cap', 'number'], 'Ends', 'Status', ['Issued', 'number'], ['Raised', 'number'], ['Fee', 'number']]} actions />
        <tbody>
          {offerings.map((o) => (
            <tr key={o.id} data-testid={`my-offering-${o.id}`}>
              <td>{o.token}</td>
              <td className="number">
                {formatDecimal(o.price)} {o.paymentAsset}
              </td>
              <td className="number">
                {formatDecimal(o.subscribed)} in {o.openSubscriptions}
              </td>
              <td className="number">{formatDecimal(o.softCap)}</td>
              <td className="number">{formatDecimal(o.hardCap)}</td>
              <td>
                <When at={o.endsAt} />
              </td>
              <td>{o.status === 'OPEN' ? 'open (closes at its end)' : words(o.status)}</td>
              <td className="number">{formatDecimal(o.issued)}</td>
              <td className="number">{formatDecimal(o.raised)}</td>
              <td className="number">{formatDecimal(o.fee)}</td>
              <td>
                <Button onPress={() => setWatched(watched === o.id ? null : o.id)} aria-label={`Subscriptions to offering ${o.id}`}>
                  {watched === o.id ? 'Hide' : 'Subscriptions'}
                </Button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {watched ? <OfferingSubscriptions offeringId={watched} /> : null}
    </>
  );
}

function OfferingSubscriptions({ offeringId }: { offeringId: string }) {
  const { data, error } = useQuery(SubscriptionsQuery, { offeringId }, { refreshMs: 5_000 });
  if (!data) return error ? <ErrorMessage error={error} /> : <Loading what="subscriptions" />;
  const list = data.offeringSubscriptions;
  return list.length ? (
    <table className="data" aria-label={`Subscriptions to offering ${offeringId}`}>
      <TableHead columns={['Investor', ['Amount', 'number'], ['Held', 'number'], 'Status', ['Allocated', 'number'], ['Refunded', 'number'], 'Since']} />
      <tbody>
        {list.map((s) => (
          <tr key={s.id}>
            <td>{s.investor}</td>
            <td className="number">{formatDecimal(s.amount)}</td>
            <td className="number">
              {formatDecimal(s.payment)} {s.paymentAsset}
            </td>
            <td>{words(s.status)}</td>
            <td className="number">{formatDecimal(s.allocated)}</td>
            <td className="number">{formatDecimal(s.refunded)}</td>
            <td>
              <When at={s.createdAt} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  ) : (
    <p>No subscriptions to offering {offeringId} yet.</p>
  );
}

function CreateOffering({ tokens, assets, onDone }: { tokens: string[]; assets: string[]; onDone: () => void }) {
  const [token, setToken] = useState(tokens[0]);
  const [paymentAsset, setPaymentAsset] = useState(assets[0] ?? '');
  const [price, setPrice] = useState('');
  const [softCap, setSoftCap] = useState('');
  const [hardCap, setHardCap] = useState('');
  const [min, setMin] = useState('');
  const [max, setMax] = useState('');
  const [seconds, setSeconds] = useState('');
  const [cutoff, setCutoff] = useState('');
  const [tranches, setTranches] = useState('');
  const [period, setPeriod] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const run = submit(async () => {
    setSaid(null);
    const vesting = tranches.trim() ? { vestingTranches: Number(tranches), vestingPeriodSeconds: Number(period) } : {};
    const offering = (
      await request(CreateOfferingMutation, {
        token,
        paymentAsset,
        price: price.trim(),
        softCap: softCap.trim(),
        hardCap: hardCap.trim(),
        minSubscription: min.trim(),
        maxSubscription: max.trim(),
        endsAt: inSeconds(Number(seconds)),
        // None: 48 hours before the end, as Regulation Crowdfunding's.
        cancelCutoffSeconds: cutoff.trim() ? Number(cutoff) : null,
        ...vesting,
      })
    ).createOffering;
    setSaid(`Offering ${offering.id} of ${offering.token} is open.`);
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label="Offer a token">
      <div className="columns">
        <Choice label="Token" options={tokens.map((t): [string, string] => [t, t])} value={token} onChange={setToken} />
        <Choice label="Paid in" options={assets.map((a): [string, string] => [a, a])} value={paymentAsset} onChange={setPaymentAsset} />
        <Field label="Price per token" name="price" isRequired inputMode="decimal" value={price} onChange={setPrice} />
      </div>
      <div className="columns">
        <Field label="Target (soft cap)" name="softCap" isRequired inputMode="decimal" value={softCap} onChange={setSoftCap} />
        <Field label="Hard cap" name="hardCap" isRequired inputMode="decimal" value={hardCap} onChange={setHardCap} />
        <Field label="Least per investor" name="min" isRequired inputMode="decimal" value={min} onChange={setMin} />
        <Field label="Most per investor" name="max" isRequired inputMode="decimal" value={max} onChange={setMax} />
      </div>
      <div className="columns">
        <Field label="Open for (seconds)" name="seconds" isRequired inputMode="numeric" value={seconds} onChange={setSeconds} validate={positiveInteger} />
        <Field
          label="Cancellable until (seconds before the end)"
          name="cutoff"
          inputMode="numeric"
          value={cutoff}
          onChange={setCutoff}
          description="Empty: 48 hours before the end."
          validate={positiveInteger}
        />
        <Field label="Vesting tranches (none: no vesting)" name="tranches" inputMode="numeric" value={tranches} onChange={setTranches} validate={positiveInteger} />
        <Field label="Seconds between tranches" name="period" inputMode="numeric" value={period} onChange={setPeriod} validate={positiveInteger} />
      </div>
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" className="primary" isDisabled={busy || !paymentAsset}>
        {busy ? 'Opening…' : 'Open the offering'}
      </Button>
    </Form>
  );
}

function CapTable({ tokens }: { tokens: string[] }) {
  const [token, setToken] = useState(tokens[0]);
  const [at, setAt] = useState('');
  // Asked when the form is submitted, not at every keystroke of a time.
  const [asOf, setAsOf] = useState<string | null>(null);
  const { data, error } = useQuery(CapTableQuery, { token, at: asOf }, { refreshMs: 5_000 });
  return (
    <>
      <Form
        onSubmit={(event) => {
          event.preventDefault();
          setAsOf(at.trim() ? at.trim() : null);
        }}
        aria-label="Cap table as of"
        className="inline"
      >
        <Choice label="Token" options={tokens.map((t): [string, string] => [t, t])} value={token} onChange={setToken} />
        <Field label="As it stood at (RFC 3339; empty: now)" name="at" value={at} onChange={setAt} />
        <Button type="submit">Show</Button>
      </Form>
      <ErrorMessage error={error} />
      {data ? (
        data.capTable.length ? (
          <table className="data" aria-label={`Cap table of ${token}`}>
            <TableHead columns={['Holder', ['Balance', 'number'], ['Locked', 'number'], ['Frozen', 'number'], ['Share', 'number']]} />
            <tbody>
              {data.capTable.map((h) => (
                <tr key={h.user} data-testid={`holder-${h.email ?? h.user}`}>
                  <td>{h.email ?? `user ${h.user}`}</td>
                  <td className="number">{formatDecimal(h.balance)}</td>
                  <td className="number">{formatDecimal(h.locked)}</td>
                  <td className="number">{formatDecimal(h.frozen)}</td>
                  <td className="number">{formatPercent(h.share, 2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p>Nobody holds {token}{asOf ? ' at that time' : ''}.</p>
        )
      ) : null}
    </>
  );
}

function Distributions({ distributions, onDone }: { distributions: Data['distributions']; onDone: () => void }) {
  if (!distributions.length) return <p>No distributions yet.</p>;
  return (
    <table className="data" aria-label="Your distributions">
      <TableHead columns={['Token', 'Kind', ['Pool', 'number'], 'Record', 'Claims until', 'Status', ['Holders', 'number'], ['Claimed', 'number'], ['Withheld', 'number'], ['Reclaimed', 'number']]} actions />
      <tbody>
        {distributions.map((d) => (
          <tr key={d.id} data-testid={`distribution-${d.id}`}>
            <td>{d.token}</td>
            <td>{words(d.kind)}</td>
            <td className="number">
              {formatDecimal(d.pool)} {d.paymentAsset}
            </td>
            <td>
              <When at={d.recordAt} />
            </td>
            <td>
              <When at={d.claimUntil} />
            </td>
            <td>{words(d.status)}</td>
            <td className="number">{d.holders}</td>
            <td className="number">{formatDecimal(d.claimed)}</td>
            <td className="number">{formatDecimal(d.withheld)}</td>
            <td className="number">{formatDecimal(d.reclaimed)}</td>
            <td>
              {d.status === 'RECORDED' && Date.now() >= Date.parse(d.claimUntil) ? (
                <ActionButton action={() => request(ReclaimMutation, { distributionId: d.id })} onDone={onDone} label={`Reclaim what distribution ${d.id} left`}>
                  Reclaim
                </ActionButton>
              ) : null}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Distribute({ tokens, assets, onDone }: { tokens: string[]; assets: string[]; onDone: () => void }) {
  const [token, setToken] = useState(tokens[0]);
  const [kind, setKind] = useState<'DIVIDEND' | 'COUPON' | 'OTHER'>('DIVIDEND');
  const [paymentAsset, setPaymentAsset] = useState(assets[0] ?? '');
  const [pool, setPool] = useState('');
  const [recordIn, setRecordIn] = useState('');
  const [claimFor, setClaimFor] = useState('');
  const [rate, setRate] = useState('0');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const run = submit(async () => {
    setSaid(null);
    const recordAt = inSeconds(Number(recordIn));
    const claimUntil = inSeconds(Number(recordIn) + Number(claimFor));
    // A percentage in the form, a fraction in the API: moved by text, never through a float.
    const defaultWithholdingRate = percentToRate(rate.trim());
    if (defaultWithholdingRate === null) throw new Error('The withholding is a percentage from 0 to 100 with at most 2 decimals.');
    const id = (await request(DistributeMutation, { token, kind, paymentAsset, pool: pool.trim(), recordAt, claimUntil, defaultWithholdingRate, idempotencyKey: newIdempotencyKey() }))
      .distribute.id;
    setSaid(`Distribution ${id} declared: its pool is paid in, the holders are recorded in ${recordIn} s.`);
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label="Declare a distribution">
      <div className="columns">
        <Choice label="Token" options={tokens.map((t): [string, string] => [t, t])} value={token} onChange={setToken} />
        <Choice
          label="Kind"
          options={[
            ['DIVIDEND', 'dividend'],
            ['COUPON', 'coupon'],
            ['OTHER', 'other'],
          ]}
          value={kind}
          onChange={setKind}
        />
        <Choice label="Paid in" options={assets.map((a): [string, string] => [a, a])} value={paymentAsset} onChange={setPaymentAsset} />
        <Field label="Pool" name="pool" isRequired inputMode="decimal" value={pool} onChange={setPool} />
      </div>
      <div className="columns">
        <Field label="Record in (seconds)" name="recordIn" isRequired inputMode="numeric" value={recordIn} onChange={setRecordIn} validate={positiveInteger} />
        <Field label="Claimable for (seconds after the record)" name="claimFor" isRequired inputMode="numeric" value={claimFor} onChange={setClaimFor} validate={positiveInteger} />
        <Field
          label="Withholding without claims (%)"
          name="rate"
          isRequired
          inputMode="decimal"
          value={rate}
          onChange={setRate}
          validate={(v) => (percentToRate(v.trim()) === null ? 'A percentage from 0 to 100 with at most 2 decimals' : null)}
        />
      </div>
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" className="primary" isDisabled={busy || !paymentAsset}>
        {busy ? 'Declaring…' : 'Declare the distribution'}
      </Button>
    </Form>
  );
}

/// "12.8" (percent) as "0.1280"; null unless 0 to 100 with at most 2 decimals.
function percentToRate(percent: string): string | null {
  const match = /^(\d{1,3})(?:\.(\d{1,2}))?$/.exec(percent);
  if (!match) return null;
  const [whole, fraction] = [match[1], match[2] ?? ''];
  if (Number(whole) > 100 || (Number(whole) === 100 && /[1-9]/.test(fraction))) return null;
  // The percentage in hundredths, then its decimal point moved four places.
  const digits = `${whole}${fraction.padEnd(2, '0')}`.padStart(5, '0');
  return `${digits.slice(0, -4)}.${digits.slice(-4)}`.replace(/^0+(?=\d)/, '');
}

function AgentActions({ tokens }: { tokens: string[] }) {
  const [token, setToken] = useState(tokens[0]);
  const [action, setAction] = useState<'freeze' | 'unfreeze' | 'force' | 'recover'>('freeze');
  const [holder, setHolder] = useState('');
  const [to, setTo] = useState('');
  const [amount, setAmount] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const run = submit(async () => {
    setSaid(null);
    const email = holder.trim();
    const [other, units] = [to.trim(), amount.trim()];
    if (action === 'freeze') {
      const done = (await request(FreezeTokensMutation, { token, email, amount: units })).freezeTokens;
      setSaid(`Done: ${formatDecimal(done.frozen)} ${token} of ${email}'s frozen.`);
    } else if (action === 'unfreeze') {
      const done = (await request(UnfreezeTokensMutation, { token, email, amount: units })).unfreezeTokens;
      setSaid(`Done: ${formatDecimal(done.frozen)} ${token} of ${email}'s still frozen.`);
    } else if (action === 'force') {
      const done = (await request(ForceTransferMutation, { token, fromEmail: email, toEmail: other, amount: units })).forceTransfer;
      setSaid(`Done: ${formatDecimal(done.moved)} ${token} moved to ${other}.`);
    } else {
      const done = (await request(RecoverTokensMutation, { token, lostEmail: email, toEmail: other })).recoverTokens;
      setSaid(`Done: ${formatDecimal(done.moved)} ${token} recovered to ${other}.`);
    }
  });
  const needsReceiver = action === 'force' || action === 'recover';
  return (
    <Form onSubmit={run} aria-label="Agent action">
      <p className="muted">Each action is a proposal: an operator approves it before it applies, and the audit log keeps both.</p>
      <div className="columns">
        <Choice label="Token" options={tokens.map((t): [string, string] => [t, t])} value={token} onChange={setToken} />
        <Choice
          label="Action"
          options={[
            ['freeze', 'freeze part of a balance'],
            ['unfreeze', 'unfreeze'],
            ['force', 'forced transfer'],
            ['recover', 'recovery to a new account'],
          ]}
          value={action}
          onChange={setAction}
        />
      </div>
      <div className="columns">
        <Field label={action === 'recover' ? "Lost account's email" : "Holder's email"} name="holder" type="email" isRequired value={holder} onChange={setHolder} />
        {needsReceiver ? <Field label={action === 'recover' ? "New account's email" : "Receiver's email"} name="to" type="email" isRequired value={to} onChange={setTo} /> : null}
        {action !== 'recover' ? <Field label={`Amount (${token})`} name="amount" isRequired inputMode="decimal" value={amount} onChange={setAmount} /> : null}
      </div>
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" isDisabled={busy}>
        {busy ? 'Proposing…' : 'Propose'}
      </Button>
    </Form>
  );
}
