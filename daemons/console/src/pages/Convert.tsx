import { useEffect, useState, type FormEvent } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit } from '../components';
import { formatDecimal, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';

const ConvertQuery = graphql(`
  query ConvertPage {
    assets { symbol scale }
    balances { asset available }
    convertPairs { base quote paused }
    convertTrades(limit: 50) { id from to fromAmount toAmount price fee via at }
  }
`);

const QuoteMutation = graphql(`
  mutation ConvertQuote($from: String!, $to: String!, $fromAmount: Decimal, $toAmount: Decimal) {
    convertQuote(from: $from, to: $to, fromAmount: $fromAmount, toAmount: $toAmount) {
      id from to fromAmount toAmount price inversePrice fee via createdAt expiresAt
    }
  }
`);

const AcceptMutation = graphql(`
  mutation AcceptConvertQuote($quoteId: ID!, $idempotencyKey: String!) {
    acceptConvertQuote(quoteId: $quoteId, idempotencyKey: $idempotencyKey) { id from to fromAmount toAmount }
  }
`);

type Data = ResultOf<typeof ConvertQuery>;
type Quote = ResultOf<typeof QuoteMutation>['convertQuote'];

/// The assets a pair reaches from `asset`, directly or through one other.
function reachable(pairs: Data['convertPairs'], asset: string): Set<string> {
  const next = (a: string) => pairs.flatMap((p) => (p.base === a ? [p.quote] : p.quote === a ? [p.base] : []));
  const out = new Set<string>();
  for (const one of next(asset)) {
    out.add(one);
    for (const two of next(one)) out.add(two);
  }
  out.delete(asset);
  return out;
}

/// Convert: ask the house for a firm price, see it count down, accept it or not.
export function Convert() {
  const { data, error, reload } = useQuery(ConvertQuery);
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="conversions" />}</main>;
  return (
    <main>
      <h1>Convert</h1>
      <ErrorMessage error={error} />
      {data.convertPairs.length === 0 ? (
        <p>The operators have listed nothing to convert yet.</p>
      ) : (
        <Panel title="Convert" id="convert">
          <ConvertForm data={data} onDone={reload} />
        </Panel>
      )}
      <Panel title="Your conversions" id="my-conversions">
        <table className="data" aria-label="Your conversions">
          <TableHead columns={['Time', ['Gave', 'number'], ['Got', 'number'], ['Price', 'number'], ['Fee', 'number'], 'Via']} />
          <tbody>
            {data.convertTrades.map((t) => (
              <tr key={t.id}>
                <td>
                  <When at={t.at} />
                </td>
                <td className="number">
                  {formatDecimal(t.fromAmount)} {t.from}
                </td>
                <td className="number">
                  {formatDecimal(t.toAmount)} {t.to}
                </td>
                <td className="number">{t.price}</td>
                <td className="number">
                  {formatDecimal(t.fee)} {t.to}
                </td>
                <td>{t.via ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {data.convertTrades.length === 0 ? <p>No conversions yet.</p> : null}
      </Panel>
    </main>
  );
}

function ConvertForm({ data, onDone }: { data: Data; onDone: () => void }) {
  const listed = [...new Set(data.convertPairs.flatMap((p) => [p.base, p.quote]))].sort();
  const [from, setFrom] = useState(listed[0] ?? '');
  const targets = [...reachable(data.convertPairs, from)].sort();
  const [to, setTo] = useState(targets[0] ?? '');
  const [side, setSide] = useState<'from' | 'to'>('from');
  const [amount, setAmount] = useState('');
  const [quote, setQuote] = useState<Quote | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const asking = useSubmit();
  const accepting = useSubmit();
  const target = targets.includes(to) ? to : (targets[0] ?? '');
  const scaleOf = (symbol: string) => data.assets.find((a) => a.symbol === symbol)?.scale;
  const amountAsset = side === 'from' ? from : target;
  const available = data.balances.find((b) => b.asset === from)?.available ?? '0';

  const ask = asking.submit(async () => {
    setDone(null);
    setQuote(null);
    const value = amount.trim();
    const answer = await request(QuoteMutation, { from, to: target, fromAmount: side === 'from' ? value : null, toAmount: side === 'to' ? value : null });
    setQuote(answer.convertQuote);
  });

  const accept = accepting.submit(async () => {
    if (!quote) return;
    const answer = await request(AcceptMutation, { quoteId: quote.id, idempotencyKey: newIdempotencyKey() });
    const trade = answer.acceptConvertQuote;
    setDone(`Converted ${formatDecimal(trade.fromAmount)} ${trade.from} into ${formatDecimal(trade.toAmount)} ${trade.to}.`);
    setQuote(null);
    setAmount('');
    onDone();
  });

  const options = (symbols: string[]): [string, string][] => symbols.map((s) => [s, s]);
  return (
    <>
      <Form onSubmit={ask} aria-label="Ask for a quote">
        <div className="columns">
          <Choice label="From" options={options(listed)} value={from} onChange={(value) => { setFrom(value); setQuote(null); }} />
          <Choice label="To" options={options(targets)} value={target} onChange={(value) => { setTo(value); setQuote(null); }} />
        </div>
        <Choice
          label="The amount is"
          options={[
            ['from', `what I give (${from})`],
            ['to', `what I get (${target})`],
          ]}
          value={side}
          onChange={(value) => { setSide(value); setQuote(null); }}
        />
        <p className="muted">
          Available: <span data-testid="convertible">{formatDecimal(available, scaleOf(from))}</span> {from}
        </p>
        <Field
          label={`Amount (${amountAsset})`}
          name="amount"
          isRequired
          inputMode="decimal"
          value={amount}
          onChange={(value) => { setAmount(value); setQuote(null); }}
          validate={(v) => (v === '' || isDecimal(v, scaleOf(amountAsset)) ? null : `An amount with at most ${scaleOf(amountAsset) ?? 0} decimals`)}
        />
        <ErrorMessage error={asking.error} />
        <Button type="submit" className="primary" isDisabled={asking.busy || !target}>
          {asking.busy ? 'Asking…' : 'Get a quote'}
        </Button>
      </Form>
      {quote ? <QuoteOffer key={quote.id} quote={quote} busy={accepting.busy} onAccept={accept} onAskAgain={ask} /> : null}
      <ErrorMessage error={accepting.error} />
      {done ? (
        <p role="status" className="placed">
          {done}
        </p>
      ) : null}
    </>
  );
}

/// Milliseconds the quote has left by this browser's clock: its life (the
/// ledger's expiry less its creation) counted from when it arrived, so a
/// browser whose clock is off still counts the right number of seconds.
function useRemainingMs(quote: Quote): number {
  const lifeMs = Date.parse(quote.expiresAt) - Date.parse(quote.createdAt);
  const [arrived] = useState(() => Date.now());
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, []);
  return Math.max(0, lifeMs - (now - arrived));
}

function QuoteOffer({ quote, busy, onAccept, onAskAgain }: { quote: Quote; busy: boolean; onAccept: (event: FormEvent) => void; onAskAgain: (event: FormEvent) => void }) {
  const remainingMs = useRemainingMs(quote);
  const expired = remainingMs === 0;
  const seconds = Math.ceil(remainingMs / 1000);
  return (
    <Form onSubmit={expired ? onAskAgain : onAccept} aria-label="The quote" className="quote" data-testid="quote">
      <dl>
        <dt>You give</dt>
        <dd data-testid="quote-from">
          {formatDecimal(quote.fromAmount)} {quote.from}
        </dd>
        <dt>You get</dt>
        <dd data-testid="quote-to">
          {formatDecimal(quote.toAmount)} {quote.to}
        </dd>
        <dt>Price</dt>
        <dd>
          1 {quote.from} = {quote.price} {quote.to}; 1 {quote.to} = {quote.inversePrice} {quote.from}
        </dd>
        <dt>Fee</dt>
        <dd>
          {formatDecimal(quote.fee)} {quote.to}, already taken from what you get
        </dd>
        {quote.via ? (
          <>
            <dt>Through</dt>
            <dd>{quote.via}</dd>
          </>
        ) : null}
      </dl>
      {/* A timer, not a live region: announcing every second would drown a screen reader; the end is announced once. */}
      <p role="timer" data-testid="countdown" aria-live="off">
        {expired ? 'This quote has expired.' : `This price holds for ${seconds} more second${seconds === 1 ? '' : 's'}.`}
      </p>
      {expired ? (
        <p role="status">The quote expired: ask again for a new price.</p>
      ) : null}
      <Button type="submit" className={expired ? undefined : 'primary'} isDisabled={busy}>
        {busy ? 'Converting…' : expired ? 'Ask again' : 'Accept'}
      </Button>
    </Form>
  );
}
