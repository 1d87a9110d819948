// Perpetual futures: every market's mark, index, funding and fund, the
// trader's positions with their margin and liquidation price (each closed
// in one step), the margin controls (leverage, cross or isolated, add or
// take back margin), the funding paid and the liquidations of a market,
// and the oracles' form. Orders are placed on the market's trading page,
// as on spot. Marks and positions are live (the markPrice and positions
// subscriptions); what no subscription carries is asked again every few
// seconds.
import { useCallback, useEffect, useRef, useState, type ReactNode } from 'react';
import { Button, Checkbox, Form, Label, Radio, RadioGroup } from 'react-aria-components';
import { Link } from 'wouter';
import { onLiveFeedClosed, request, subscribe } from '../api';
import { Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit, words } from '../components';
import { digitsOf, formatDecimal, formatPercent, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';

/// How often a figure no subscription carries is asked again (and a live
/// one whose subscription failed): marks move every second on the ledger.
export const REFRESH_MS = 2_000;

export const PerpetualMarketsQuery = graphql(`
  query PerpetualMarkets {
    perpetualMarkets {
      id base collateral tickSize lotSize markPrice indexPrice lastPrice fundingRate lastFundingRate nextFundingTime fundingIntervalMs
      insuranceFund openInterest maxLeverage liquidationPenaltyRate trading
      marginBrackets { maxNotional initialMarginRate maintenanceMarginRate maxLeverage }
    }
  }
`);

/// The figures of every perpetual market that the markPrice subscription
/// does not carry (it has the mark, the index, the predicted funding rate
/// and the next funding time only), asked again every REFRESH_MS: the last
/// price and the open interest move with each trade, the insurance fund
/// with liquidations and fees, the last funding rate at each funding and
/// trading with the operators' halts, and no subscription sends them.
const PerpetualFiguresQuery = graphql(`
  query PerpetualFigures {
    perpetualMarkets { id lastPrice lastFundingRate openInterest insuranceFund trading }
  }
`);

/// A perpetual market's mark, index and funding: live, or asked once the subscription failed.
const MarkPriceSubscription = graphql(`
  subscription LiveMarkPrice($market: ID!) {
    markPrice(market: $market) { market markPrice indexPrice fundingRate nextFundingTime intervalMs }
  }
`);

const FundingRateQuery = graphql(`
  query FundingRate($market: ID!) {
    fetchFundingRate(market: $market) { market markPrice indexPrice fundingRate nextFundingTime intervalMs }
  }
`);

export const MyPositionsQuery = graphql(`
  query MyPositions {
    fetchPositions(includeFlat: true) { market side contracts entryPrice markPrice notional unrealizedPnl margin maintenanceMargin liquidationPrice marginMode leverage funding }
  }
`);

/// The caller's open positions (never the flat ones), at every fill, mark, funding, liquidation and margin change.
const PositionsSubscription = graphql(`
  subscription LivePositions {
    positions { market side contracts entryPrice markPrice notional unrealizedPnl margin maintenanceMargin liquidationPrice marginMode leverage funding }
  }
`);

const ClosePositionMutation = graphql(`
  mutation ClosePosition($market: ID!, $price: Decimal, $clientOrderId: String) {
    closePosition(market: $market, price: $price, clientOrderId: $clientOrderId) { id side type price quantity filledQuantity status rejectReason }
  }
`);

const FundingHistoryQuery = graphql(`
  query FundingHistory($market: ID!) {
    fetchFundingRateHistory(market: $market, limit: 20) { fundingRate markPrice at amount unpaid }
  }
`);

const LiquidationsQuery = graphql(`
  query MarketLiquidations($market: ID!, $mine: Boolean!) {
    liquidations(market: $market, mine: $mine, limit: 20) { id kind side contracts price bankruptcyPrice offerPrice penalty at }
  }
`);

const SetLeverageMutation = graphql(`
  mutation SetLeverage($market: ID!, $leverage: Int!) {
    setLeverage(market: $market, leverage: $leverage) { market leverage margin liquidationPrice }
  }
`);

const SetMarginModeMutation = graphql(`
  mutation SetMarginMode($market: ID!, $mode: MarginMode!) {
    setMarginMode(market: $market, mode: $mode) { market marginMode }
  }
`);

const AddMarginMutation = graphql(`
  mutation AddMargin($market: ID!, $amount: Decimal!) {
    addMargin(market: $market, amount: $amount) { market margin liquidationPrice }
  }
`);

const ReduceMarginMutation = graphql(`
  mutation ReduceMargin($market: ID!, $amount: Decimal!) {
    reduceMargin(market: $market, amount: $amount) { market margin liquidationPrice }
  }
`);

const SubmitOraclePriceMutation = graphql(`
  mutation SubmitOraclePrice($market: ID!, $price: Decimal!) {
    submitOraclePrice(market: $market, price: $price) { market indexPrice markPrice }
  }
`);

export type PerpetualMarket = ResultOf<typeof PerpetualMarketsQuery>['perpetualMarkets'][number];
export type Position = ResultOf<typeof MyPositionsQuery>['fetchPositions'][number];
type MarginMode = Position['marginMode'];
type Mark = ResultOf<typeof MarkPriceSubscription>['markPrice'];

/// The markets' marks, indexes and funding, live: one markPrice
/// subscription a market. A market whose subscription failed or ended (the
/// gateway refused or stopped it, or the socket closed) is asked every
/// REFRESH_MS instead, until its feed speaks again.
export function useLiveMarks(ids: string[]): Map<string, Mark> {
  const [marks, setMarks] = useState<Map<string, Mark>>(() => new Map());
  const [failed, setFailed] = useState<ReadonlySet<string>>(() => new Set());
  const key = [...new Set(ids)].sort().join(' ');
  useEffect(() => {
    if (!key) return;
    const fail = (market: string) => () => setFailed((known) => (known.has(market) ? known : new Set(known).add(market)));
    const stops = key.split(' ').map((market) =>
      subscribe(
        MarkPriceSubscription,
        { market },
        (data) => {
          setMarks((known) => new Map(known).set(market, data.markPrice));
          setFailed((known) => (known.has(market) ? new Set([...known].filter((m) => m !== market)) : known));
        },
        fail(market),
        fail(market),
      ),
    );
    stops.push(onLiveFeedClosed(() => setFailed(new Set(key.split(' ')))));
    return () => {
      for (const stop of stops) stop();
    };
  }, [key]);
  const polled = [...failed].filter((market) => key.split(' ').includes(market)).join(' ');
  useEffect(() => {
    if (!polled) return;
    const ask = () => {
      // A tab in the background asks nothing; it catches up when shown again.
      if (document.visibilityState === 'hidden') return;
      for (const market of polled.split(' ')) {
        request(FundingRateQuery, { market }).then(
          (data) => setMarks((known) => new Map(known).set(market, data.fetchFundingRate)),
          () => {},
        );
      }
    };
    ask();
    const timer = setInterval(ask, REFRESH_MS);
    return () => clearInterval(timer);
  }, [polled]);
  return marks;
}

/// A market as queried, with its live mark, index and funding when they have come.
export function withMark<M extends PerpetualMarket>(market: M, mark: Mark | undefined): M {
  if (!mark) return market;
  return { ...market, markPrice: mark.markPrice, indexPrice: mark.indexPrice, fundingRate: mark.fundingRate, nextFundingTime: mark.nextFundingTime, fundingIntervalMs: mark.intervalMs };
}

/// "BTC-USD-PERP ETH-USD-PERP": which markets a list of positions is open on.
function marketsOf(positions: Position[]): string {
  return positions
    .map((p) => p.market)
    .sort()
    .join(' ');
}

/// The caller's positions: the query (with the flat ones whose leverage
/// or margin mode they chose) for the first render and on `reload`, then
/// live from the positions subscription, which sends the open ones at
/// every fill, mark, funding, liquidation and margin change. A position
/// that opens or closes asks the query again, for the flat rows the
/// subscription leaves out. If the subscription fails or ends (or the
/// socket closes), the query is asked every REFRESH_MS instead, until it
/// speaks again.
export function usePositions(signedIn: boolean) {
  const [open, setOpen] = useState<Position[] | null>(null);
  const [flat, setFlat] = useState<Position[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [failed, setFailed] = useState(false);
  // When the open positions shown were read: a query's answer counts from
  // when it was asked, so an answer a push overtook puts no older figures back.
  const shownAt = useRef(0);
  const shownMarkets = useRef<string | null>(null);
  const reload = useCallback(() => {
    if (!signedIn) return;
    const asked = performance.now();
    request(MyPositionsQuery).then(
      (data) => {
        setFlat(data.fetchPositions.filter((p) => p.side === 'FLAT'));
        if (asked >= shownAt.current) {
          const now = data.fetchPositions.filter((p) => p.side !== 'FLAT');
          shownAt.current = asked;
          shownMarkets.current = marketsOf(now);
          setOpen(now);
        }
        setError(null);
      },
      setError,
    );
  }, [signedIn]);
  useEffect(() => {
    shownAt.current = 0;
    shownMarkets.current = null;
    setOpen(null);
    setFlat([]);
    setError(null);
    if (!signedIn) return;
    reload();
    const stopFeed = onLiveFeedClosed(() => setFailed(true));
    const stop = subscribe(
      PositionsSubscription,
      {},
      (data) => {
        const now = data.positions;
        shownAt.current = performance.now();
        const markets = marketsOf(now);
        if (shownMarkets.current !== null && markets !== shownMarkets.current) reload();
        shownMarkets.current = markets;
        setOpen(now);
        setFailed(false);
        setError(null);
      },
      () => setFailed(true),
      () => setFailed(true),
    );
    return () => {
      stopFeed();
      stop();
    };
  }, [signedIn, reload]);
  useEffect(() => {
    if (!failed || !signedIn) return;
    const timer = setInterval(() => {
      if (document.visibilityState !== 'hidden') reload();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [failed, signedIn, reload]);
  const positions = open === null ? null : [...open, ...flat.filter((f) => !open.some((p) => p.market === f.market))].sort((a, b) => a.market.localeCompare(b.market));
  return { positions, error, reload };
}

/// "28800000" ms as "8 h".
export function intervalOf(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

/// Milliseconds as 00:07:59 (hours past 99 as they are).
function clock(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor((seconds % 3600) / 60))}:${pad(seconds % 60)}`;
}

/// The time left to the next funding, counted down every second on this
/// side; `onPassed` once it is reached, to ask for the next one.
export function FundingCountdown({ at, onPassed }: { at: string; onPassed?: () => void }) {
  const target = Date.parse(at);
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  const left = Math.max(0, target - now);
  const passed = left === 0;
  useEffect(() => {
    if (passed) onPassed?.();
  }, [passed, onPassed]);
  // A timer, not a live region: a reading every second would drown a screen reader.
  return (
    <time role="timer" aria-live="off" dateTime={at} title={new Date(at).toLocaleString()} data-testid="next-funding">
      {clock(left)}
    </time>
  );
}

/// A signed amount: "+10.00" up, "-10.00" down.
function Signed({ value }: { value: string }) {
  const negative = value.startsWith('-');
  const zero = !/[1-9]/.test(value);
  return <span className={zero ? undefined : negative ? 'down' : 'up'}>{`${negative || zero ? '' : '+'}${formatDecimal(value)}`}</span>;
}

const SIDES: Record<Position['side'], string> = { LONG: 'Long', SHORT: 'Short', FLAT: 'Flat' };
const MODES: Record<MarginMode, string> = { CROSS: 'Cross', ISOLATED: 'Isolated' };

export function Perpetuals() {
  const { me } = useSession();
  // Asked once, for the first render and the figures that do not move (the
  // contract, its brackets); the rest is live or polled, merged below.
  const markets = useQuery(PerpetualMarketsQuery);
  const figures = useQuery(PerpetualFiguresQuery, undefined, { refreshMs: REFRESH_MS });
  const marks = useLiveMarks(markets.data?.perpetualMarkets.map((m) => m.id) ?? []);
  const positions = usePositions(!!me);
  const [chosen, setChosen] = useState<string | null>(null);
  const [closed, setClosed] = useState<string | null>(null);
  const polled = new Map(figures.data?.perpetualMarkets.map((f) => [f.id, f]) ?? []);
  const list = (markets.data?.perpetualMarkets ?? []).map((m) => withMark({ ...m, ...polled.get(m.id) }, marks.get(m.id)));
  const selected = list.find((m) => m.id === chosen) ?? list[0] ?? null;
  const mine = me ? (positions.positions ?? []) : [];
  // A market listed since the page showed: its contract and brackets.
  const unknown = markets.data ? (figures.data?.perpetualMarkets.some((f) => !markets.data?.perpetualMarkets.some((m) => m.id === f.id)) ?? false) : false;
  const reloadMarkets = markets.reload;
  useEffect(() => {
    if (unknown) reloadMarkets();
  }, [unknown, reloadMarkets]);
  const reloadAll = useCallback(() => {
    figures.reload();
    positions.reload();
  }, [figures.reload, positions.reload]);
  return (
    <main className="perpetuals">
      <h1>Perpetual futures</h1>
      <ErrorMessage error={markets.error} />
      <Panel title="Markets" id="perpetual-markets">
        {!markets.data ? (
          markets.error ? null : <Loading what="the perpetual markets" />
        ) : list.length === 0 ? (
          <p>No perpetual markets yet: operators list them under Operators, Assets and markets.</p>
        ) : (
          // The next funding time comes live once the funding is paid; the last rate and the fund are polled.
          <MarketTable markets={list} onFunding={figures.reload} />
        )}
      </Panel>
      {me ? (
        <Panel title="Your positions" id="positions">
          <ErrorMessage error={positions.error} />
          {closed ? (
            <p role="status" className="placed">
              {closed}
            </p>
          ) : null}
          {!positions.positions ? (
            positions.error ? null : <Loading what="your positions" />
          ) : (
            <PositionTable
              positions={mine}
              markets={list}
              actions={(p) => {
                const market = list.find((m) => m.id === p.market);
                return p.side === 'FLAT' || !market ? null : (
                  <CloseInRow
                    position={p}
                    market={market}
                    onClosed={(said) => {
                      setClosed(said);
                      reloadAll();
                    }}
                  />
                );
              }}
            />
          )}
        </Panel>
      ) : (
        <p>
          <Link href="/signin">Sign in</Link> to see your positions and trade.
        </p>
      )}
      {selected ? (
        <>
          <div className="toolbar market-choice">
            <Choice label="Market" options={list.map((m) => [m.id, m.id] as [string, string])} value={selected.id} onChange={setChosen} />
            <Link href={`/trade/${encodeURIComponent(selected.id)}`}>Trade {selected.id}</Link>
          </div>
          {me ? (
            <Panel title={`Margin and leverage on ${selected.id}`} id="margin-controls">
              <MarginControls key={selected.id} market={selected} position={mine.find((p) => p.market === selected.id)} onChange={reloadAll} />
            </Panel>
          ) : null}
          <div className="columns">
            <Panel title={`Contract of ${selected.id}`} id="contract">
              <Contract market={selected} />
            </Panel>
            {me ? (
              <Panel title={`Oracle price for ${selected.id}`} id="oracle">
                {/* The index and the mark it moves come back on the markPrice subscription. */}
                <OracleForm key={selected.id} market={selected} />
              </Panel>
            ) : null}
          </div>
          <Panel title={`Funding history of ${selected.id}`} id="funding-history">
            <FundingHistory market={selected.id} />
          </Panel>
          <Panel title={`Liquidations on ${selected.id}`} id="liquidations">
            <Liquidations market={selected} signedIn={!!me} />
          </Panel>
        </>
      ) : null}
    </main>
  );
}

function MarketTable({ markets, onFunding }: { markets: PerpetualMarket[]; onFunding: () => void }) {
  return (
    <table className="data" aria-label="Perpetual markets">
      <TableHead
        columns={[
          'Market',
          ['Mark', 'number'],
          ['Index', 'number'],
          ['Last', 'number'],
          ['Funding rate', 'number'],
          ['Next funding', 'number'],
          ['Open interest', 'number'],
          ['Insurance fund', 'number'],
          ['Max leverage', 'number'],
          'Status',
        ]}
      />
      <tbody>
        {markets.map((m) => (
          <tr key={m.id} data-market={m.id}>
            <th scope="row">
              <Link href={`/trade/${encodeURIComponent(m.id)}`}>{m.id}</Link>
            </th>
            <td className="number">{formatDecimal(m.markPrice)}</td>
            <td className="number">{m.indexPrice ? formatDecimal(m.indexPrice) : <span title="No fresh oracle price: only orders that reduce a position are taken">stale</span>}</td>
            <td className="number">{formatDecimal(m.lastPrice)}</td>
            <td className="number" title={`The last funding paid ${formatPercent(m.lastFundingRate)}`}>
              {formatPercent(m.fundingRate)} / {intervalOf(m.fundingIntervalMs)}
            </td>
            <td className="number">
              <FundingCountdown at={m.nextFundingTime} onPassed={onFunding} />
            </td>
            <td className="number">
              {formatDecimal(m.openInterest)} {m.base}
            </td>
            <td className="number">
              {formatDecimal(m.insuranceFund)} {m.collateral}
            </td>
            <td className="number">{m.maxLeverage}×</td>
            <td>{m.trading ? 'Trading' : 'Halted'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/// The caller's positions: open ones, and flat ones whose settings they
/// chose; `actions` puts a control at the end of each row.
export function PositionTable({
  positions,
  markets,
  label = 'Your positions',
  empty = "No positions yet: buy or sell on a perpetual market's trading page.",
  actions,
}: {
  positions: Position[];
  markets: PerpetualMarket[];
  label?: string;
  empty?: string;
  actions?: (position: Position) => ReactNode;
}) {
  if (positions.length === 0) return <p>{empty}</p>;
  const collateral = (id: string) => markets.find((m) => m.id === id)?.collateral ?? '';
  const base = (id: string) => markets.find((m) => m.id === id)?.base ?? '';
  return (
    <>
      <table className="data" aria-label={label}>
        <TableHead
          columns={[
            'Market',
            'Side',
            ['Contracts', 'number'],
            ['Entry', 'number'],
            ['Mark', 'number'],
            ['Unrealized PnL', 'number'],
            ['Margin', 'number'],
            ['Maintenance margin', 'number'],
            ['Liquidation price', 'number'],
            ['Leverage', 'number'],
            'Margin mode',
            ['Funding received', 'number'],
          ]}
          actions={!!actions}
        />
        <tbody>
          {positions.map((p) => (
            <tr key={p.market} data-market={p.market}>
              <th scope="row">
                <Link href={`/trade/${encodeURIComponent(p.market)}`}>{p.market}</Link>
              </th>
              <td className={p.side === 'LONG' ? 'up' : p.side === 'SHORT' ? 'down' : undefined}>{SIDES[p.side]}</td>
              <td className="number">
                {formatDecimal(p.contracts)} {base(p.market)}
              </td>
              <td className="number">{formatDecimal(p.entryPrice)}</td>
              <td className="number">{formatDecimal(p.markPrice)}</td>
              <td className="number">
                <Signed value={p.unrealizedPnl} />
              </td>
              <td className="number">{formatDecimal(p.margin)}</td>
              <td className="number">{formatDecimal(p.maintenanceMargin)}</td>
              <td className="number">{p.liquidationPrice ? formatDecimal(p.liquidationPrice) : p.side === 'FLAT' ? '—' : 'none'}</td>
              <td className="number">{p.leverage}×</td>
              <td>{MODES[p.marginMode]}</td>
              <td className="number">
                <Signed value={p.funding} />
              </td>
              {actions ? <td className="row-control">{actions(p)}</td> : null}
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted">
        Amounts in each market's collateral{positions.length ? ` (${[...new Set(positions.map((p) => collateral(p.market)).filter(Boolean))].join(', ')})` : ''}. Profit and loss
        are paid into the margin at every new mark; funding received is negative when paid.
      </p>
    </>
  );
}

/// Closes the whole position in one step (closePosition): with a limit
/// price, a reduce-only GTC order for all of it that rests until it fills;
/// without, an IOC market order no worse than the mark moved against the
/// position by its initial margin rate (1 / leverage, at most 10%).
/// `onClosed` gets what was placed, in words: the form may be gone by then
/// (the position with it), so its owner shows it.
export function ClosePosition({
  position,
  market,
  onClosed,
  onKeep,
}: {
  position: Position;
  market: PerpetualMarket;
  onClosed: (said: string) => void;
  onKeep?: () => void;
}) {
  const [price, setPrice] = useState('');
  // One key per closing the user means: a retry after a lost answer places nothing twice.
  const [clientOrderId, setClientOrderId] = useState(newIdempotencyKey);
  const { busy, error, submit } = useSubmit();
  const long = position.side === 'LONG';
  const run = submit(async () => {
    const order = (await request(ClosePositionMutation, { market: market.id, price: price.trim() || null, clientOrderId })).closePosition;
    setClientOrderId(newIdempotencyKey());
    setPrice('');
    const how = order.type === 'MARKET' ? `at the market, no ${order.side === 'SELL' ? 'lower' : 'higher'} than ${formatDecimal(order.price)}` : `at ${formatDecimal(order.price)}`;
    const filled = order.status === 'PARTIALLY_FILLED' || (order.status === 'CANCELLED' && /[1-9]/.test(order.filledQuantity)) ? ` (${formatDecimal(order.filledQuantity)} filled)` : '';
    onClosed(
      `Closing ${market.id}: order ${order.id} to ${order.side === 'SELL' ? 'sell' : 'buy'} ${formatDecimal(order.quantity)} ${market.base} ${how}, reduce only: ${words(order.status)}${filled}${order.rejectReason ? ` (${order.rejectReason})` : ''}.`,
    );
  });
  return (
    <Form onSubmit={run} aria-label={`Close position on ${market.id}`} className="close-position">
      <Field
        label={`Limit price (${market.collateral})`}
        name="closePrice"
        inputMode="decimal"
        value={price}
        onChange={(value) => {
          setPrice(value);
          setClientOrderId(newIdempotencyKey());
        }}
        description={`Empty: at the market, no ${long ? 'lower' : 'higher'} than the mark ${long ? 'less' : 'plus'} your initial margin rate (1 / ${position.leverage}, at most 10%)`}
        validate={(v) => (v.trim() === '' || isDecimal(v, digitsOf(market.tickSize)) ? null : `A price in steps of ${market.tickSize}, or none`)}
      />
      <ErrorMessage error={error} />
      <div className="row-actions">
        <Button type="submit" isDisabled={busy} className={long ? 'primary sell' : 'primary buy'}>
          {busy ? 'Closing…' : 'Close position'}
        </Button>
        {onKeep ? <Button onPress={onKeep}>Keep it open</Button> : null}
      </div>
    </Form>
  );
}

/// A position's row: its closing form, opened in place.
function CloseInRow({ position, market, onClosed }: { position: Position; market: PerpetualMarket; onClosed: (said: string) => void }) {
  const [open, setOpen] = useState(false);
  if (!open) {
    return (
      <Button onPress={() => setOpen(true)} aria-label={`Close position on ${position.market}`}>
        Close
      </Button>
    );
  }
  return (
    <div className="amend">
      <ClosePosition
        position={position}
        market={market}
        onClosed={(said) => {
          setOpen(false);
          onClosed(said);
        }}
        onKeep={() => setOpen(false)}
      />
    </div>
  );
}

/// A form whose submit runs `action` and says what it did, or shows the API's refusal.
function ActionForm({ label, button, action, children }: { label: string; button: string; action: () => Promise<string>; children: ReactNode }) {
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const run = submit(async () => {
    setSaid(null);
    setSaid(await action());
  });
  return (
    <Form onSubmit={run} aria-label={label}>
      {children}
      <ErrorMessage error={error} />
      {said ? (
        <p role="status" className="placed">
          {said}
        </p>
      ) : null}
      <Button type="submit" isDisabled={busy}>
        {busy ? 'Working…' : button}
      </Button>
    </Form>
  );
}

function MarginControls({ market, position, onChange }: { market: PerpetualMarket; position: Position | undefined; onChange: () => void }) {
  const [leverage, setLeverage] = useState('');
  const [mode, setMode] = useState<MarginMode | null>(null);
  const [add, setAdd] = useState('');
  const [reduce, setReduce] = useState('');
  const currentMode = position?.marginMode ?? 'CROSS';
  const shownMode = mode ?? currentMode;
  const money = (value: string | null | undefined) => `${formatDecimal(value)} ${market.collateral}`;
  const amountValid = (v: string) => (v === '' || isDecimal(v) ? null : `An amount of ${market.collateral}`);
  const liquidation = (price: string | null | undefined) => (price ? `liquidation price ${formatDecimal(price)}` : 'no liquidation price');
  return (
    <>
      <p>
        Now: {position ? `${position.leverage}× leverage, ${words(position.marginMode)} margin` : `the market's defaults (${market.maxLeverage}×, cross margin)`}.
      </p>
      <div className="controls">
        <ActionForm
          label="Set leverage"
          button="Set leverage"
          action={async () => {
            const answer = (await request(SetLeverageMutation, { market: market.id, leverage: Number(leverage) })).setLeverage;
            onChange();
            return `Leverage on ${answer.market} is ${answer.leverage}×; margin ${money(answer.margin)}.`;
          }}
        >
          <Field
            label="Leverage"
            name="leverage"
            isRequired
            inputMode="numeric"
            value={leverage}
            onChange={setLeverage}
            description={`1 to ${market.maxLeverage}× (less for large positions)`}
            validate={(v) => (v === '' || /^[1-9]\d{0,3}$/.test(v) ? null : 'A whole number from 1')}
          />
        </ActionForm>
        <ActionForm
          label="Set margin mode"
          button="Set margin mode"
          action={async () => {
            // Refused or not, the choice shown is the position's again.
            const answer = await request(SetMarginModeMutation, { market: market.id, mode: shownMode })
              .then((data) => data.setMarginMode)
              .finally(() => setMode(null));
            onChange();
            return `${answer.market} is in ${words(answer.marginMode)} margin.`;
          }}
        >
          <RadioGroup value={shownMode} onChange={(value) => setMode(value as MarginMode)} orientation="horizontal">
            <Label>Margin mode</Label>
            <Radio value="CROSS">Cross</Radio>
            <Radio value="ISOLATED">Isolated</Radio>
          </RadioGroup>
          <p className="hint">Only with no position and no open orders on the market. Cross margin draws on your whole {market.collateral} balance; isolated, only on the position's own margin.</p>
        </ActionForm>
        <ActionForm
          label="Add margin"
          button="Add margin"
          action={async () => {
            const answer = (await request(AddMarginMutation, { market: market.id, amount: add.trim() })).addMargin;
            onChange();
            return `Added ${add.trim()} ${market.collateral}: margin ${money(answer.margin)}, ${liquidation(answer.liquidationPrice)}.`;
          }}
        >
          <Field label={`Amount to add (${market.collateral})`} name="addMargin" isRequired inputMode="decimal" value={add} onChange={setAdd} validate={amountValid} />
        </ActionForm>
        <ActionForm
          label="Reduce margin"
          button="Reduce margin"
          action={async () => {
            const answer = (await request(ReduceMarginMutation, { market: market.id, amount: reduce.trim() })).reduceMargin;
            onChange();
            return `Took back ${reduce.trim()} ${market.collateral}: margin ${money(answer.margin)}, ${liquidation(answer.liquidationPrice)}.`;
          }}
        >
          <Field
            label={`Amount to take back (${market.collateral})`}
            name="reduceMargin"
            isRequired
            inputMode="decimal"
            value={reduce}
            onChange={setReduce}
            validate={amountValid}
            description="Down to what the position and its orders need"
          />
        </ActionForm>
      </div>
      <p className="hint">Adding and taking back margin is for isolated positions; a cross position draws on your balance.</p>
    </>
  );
}

function Contract({ market }: { market: PerpetualMarket }) {
  return (
    <>
      <dl className="facts">
        <dt>Contract</dt>
        <dd>
          {market.lotSize} {market.base} a lot, priced in {market.collateral} by {market.tickSize}
        </dd>
        <dt>Funding</dt>
        <dd>
          every {intervalOf(market.fundingIntervalMs)}; next at {formatPercent(market.fundingRate)}, last at {formatPercent(market.lastFundingRate)}
        </dd>
        <dt>Liquidation penalty</dt>
        <dd>{formatPercent(market.liquidationPenaltyRate, 2)} of the notional, to the insurance fund</dd>
      </dl>
      <table className="data" aria-label="Margin brackets">
        <TableHead columns={[[`Notional up to (${market.collateral})`, 'number'], ['Initial margin', 'number'], ['Maintenance margin', 'number'], ['Max leverage', 'number']]} />
        <tbody>
          {market.marginBrackets.map((b) => (
            <tr key={b.maxNotional}>
              <td className="number">{formatDecimal(b.maxNotional)}</td>
              <td className="number">{formatPercent(b.initialMarginRate, 2)}</td>
              <td className="number">{formatPercent(b.maintenanceMarginRate, 2)}</td>
              <td className="number">{b.maxLeverage}×</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/// The market's oracles send their prices here; anyone else is refused (FORBIDDEN).
function OracleForm({ market }: { market: PerpetualMarket }) {
  const [price, setPrice] = useState('');
  const digits = digitsOf(market.tickSize);
  return (
    <ActionForm
      label="Submit a price"
      button="Submit price"
      action={async () => {
        const answer = (await request(SubmitOraclePriceMutation, { market: market.id, price: price.trim() })).submitOraclePrice;
        return `Price taken for ${answer.market}: index ${formatDecimal(answer.indexPrice)}, mark ${answer.markPrice ? formatDecimal(answer.markPrice) : 'unchanged'}.`;
      }}
    >
      <p className="hint">For the market's oracles, whom the operators name.</p>
      <Field
        label={`Price (${market.collateral})`}
        name="oraclePrice"
        isRequired
        inputMode="decimal"
        value={price}
        onChange={setPrice}
        validate={(v) => (v === '' || isDecimal(v, digits) ? null : `A price in steps of ${market.tickSize}`)}
      />
    </ActionForm>
  );
}

function FundingHistory({ market }: { market: string }) {
  const { data, error } = useQuery(FundingHistoryQuery, { market }, { refreshMs: REFRESH_MS * 5 });
  if (error) return <ErrorMessage error={error} />;
  if (!data) return <Loading what="the funding history" />;
  if (data.fetchFundingRateHistory.length === 0) return <p>No funding paid yet.</p>;
  return (
    <table className="data" aria-label="Funding history">
      <TableHead columns={['When', ['Rate', 'number'], ['Mark', 'number'], ['Paid by payers', 'number'], ['Unpaid', 'number']]} />
      <tbody>
        {data.fetchFundingRateHistory.map((f) => (
          <tr key={f.at}>
            <td>
              <When at={f.at} />
            </td>
            <td className="number">{formatPercent(f.fundingRate)}</td>
            <td className="number">{formatDecimal(f.markPrice)}</td>
            <td className="number">{formatDecimal(f.amount)}</td>
            <td className="number">{formatDecimal(f.unpaid)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Liquidations({ market, signedIn }: { market: PerpetualMarket; signedIn: boolean }) {
  const [mine, setMine] = useState(false);
  const { data, error } = useQuery(LiquidationsQuery, { market: market.id, mine: signedIn && mine }, { refreshMs: REFRESH_MS * 2 });
  const list = data?.liquidations ?? [];
  return (
    <>
      {signedIn ? (
        <Checkbox isSelected={mine} onChange={setMine}>
          <span className="box" aria-hidden="true" />
          Only mine
        </Checkbox>
      ) : null}
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="the liquidations" />
      ) : list.length === 0 ? (
        <p>No liquidations{mine ? ' of yours' : ''}.</p>
      ) : (
        <table className="data" aria-label="Liquidations">
          <TableHead
            columns={[
              'When',
              'Kind',
              'Side',
              ['Contracts', 'number'],
              ['Mark', 'number'],
              ['Bankruptcy price', 'number'],
              ['Offered no worse than', 'number'],
              [`Penalty (${market.collateral})`, 'number'],
            ]}
          />
          <tbody>
            {list.map((l) => (
              <tr key={l.id}>
                <td>
                  <When at={l.at} />
                </td>
                <td>{l.kind === 'LIQUIDATED' ? 'Liquidated' : 'Auto-deleveraged'}</td>
                <td>{SIDES[l.side]}</td>
                <td className="number">
                  {formatDecimal(l.contracts)} {market.base}
                </td>
                <td className="number">{formatDecimal(l.price)}</td>
                <td className="number">{formatDecimal(l.bankruptcyPrice)}</td>
                <td className="number">{formatDecimal(l.offerPrice)}</td>
                <td className="number">{formatDecimal(l.penalty)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
