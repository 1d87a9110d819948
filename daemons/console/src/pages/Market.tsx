import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { Button, Checkbox, Form, Input, Label, Radio, RadioGroup, TextField } from 'react-aria-components';
import { Link } from 'wouter';
import { request, subscribe } from '../api';
import { Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, useQuery, words } from '../components';
import { digitsOf, formatDecimal, formatPercent, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';
import { CandleChart } from './Chart';
import { ClosePosition, FundingCountdown, PerpetualMarketsQuery, PositionTable, intervalOf, useLiveMarks, usePositions, withMark } from './Perpetuals';

const MarketQuery = graphql(`
  query Market($id: ID!) {
    market(id: $id) { id trading tickSize lotSize makerFeeRate takerFeeRate priceBand base { symbol scale } quote { symbol scale } }
  }
`);

const TickerSubscription = graphql(`
  subscription LiveTicker($market: ID!) {
    ticker(market: $market) { lastPrice bestBid bestAsk change changePercent high low volume quoteVolume trades }
  }
`);

const BookSubscription = graphql(`
  subscription LiveBook($market: ID!) {
    orderBook(market: $market, depth: 15) { sequence bids { price quantity } asks { price quantity } }
  }
`);

const TradesSubscription = graphql(`
  subscription LiveTrades($market: ID!) {
    trades(market: $market) { id price quantity takerSide createdAt }
  }
`);

const MyOrdersQuery = graphql(`
  query MyOrders($market: ID!) {
    userOrders(market: $market, limit: 50) { id market side type timeInForce price quantity filledQuantity averagePrice status triggerPrice triggeredAt rejectReason amendRefused reduceOnly createdAt }
  }
`);

const MyOrdersSubscription = graphql(`
  subscription LiveMyOrders {
    userOrders { id market side type timeInForce price quantity filledQuantity averagePrice status triggerPrice triggeredAt rejectReason amendRefused reduceOnly createdAt }
  }
`);

const PlaceOrderMutation = graphql(`
  mutation PlaceOrder($input: PlaceOrderInput!) {
    placeOrder(input: $input) { id status rejectReason reduceOnly }
  }
`);

const CancelOrderMutation = graphql(`
  mutation CancelOrder($id: ID!) {
    cancelOrder(id: $id) { id status }
  }
`);

const AmendOrderMutation = graphql(`
  mutation AmendOrder($id: ID!, $price: Decimal, $quantity: Decimal) {
    amendOrder(id: $id, price: $price, quantity: $quantity) { id status price quantity amendRefused }
  }
`);

const MyFillsQuery = graphql(`
  query MyFills($market: ID!) {
    userTrades(market: $market, limit: 50) { id price quantity side fee feeAsset createdAt orderId }
  }
`);

const BalancesQuery = graphql(`
  query MarketBalances {
    balances { asset available locked }
  }
`);

type MarketInfo = NonNullable<ResultOf<typeof MarketQuery>['market']>;
type Ticker = ResultOf<typeof TickerSubscription>['ticker'];
type Book = ResultOf<typeof BookSubscription>['orderBook'];
type Trade = ResultOf<typeof TradesSubscription>['trades'];
type Order = ResultOf<typeof MyOrdersQuery>['userOrders'][number];
type Balance = ResultOf<typeof BalancesQuery>['balances'][number];
type Fill = ResultOf<typeof MyFillsQuery>['userTrades'][number];

const OPEN = new Set(['OPEN', 'PARTIALLY_FILLED']);

/// One market: its chart, book and trades live, and for a signed-in
/// trader the order form, their orders and the balances they trade.
export function Market({ id }: { id: string }) {
  const { me } = useSession();
  const [market, setMarket] = useState<MarketInfo | null | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [orders, setOrders] = useState<Map<string, Order>>(new Map());
  const [balances, setBalances] = useState<Balance[]>([]);
  const [fills, setFills] = useState<Fill[]>([]);
  // Whether this is a perpetual market: then its mark, index, funding and the trader's position show too.
  const perpetuals = useQuery(PerpetualMarketsQuery);
  const perpetual = perpetuals.data?.perpetualMarkets.some((m) => m.id === id) ?? false;

  useEffect(() => {
    request(MarketQuery, { id }).then((data) => setMarket(data.market), setError);
  }, [id]);

  const loadBalances = useCallback(() => {
    request(BalancesQuery).then((data) => setBalances(data.balances), setError);
  }, []);

  const loadFills = useCallback(() => {
    request(MyFillsQuery, { market: id }).then((data) => setFills(data.userTrades), setError);
  }, [id]);

  // The whole list again: after placing, in case the order's own event came before this page subscribed.
  const loadOrders = useCallback(() => {
    request(MyOrdersQuery, { market: id }).then((data) => setOrders(new Map(data.userOrders.map((o) => [o.id, o]))), setError);
  }, [id]);

  useEffect(() => {
    if (!me) return;
    loadOrders();
    loadBalances();
    loadFills();
    const stop = subscribe(
      MyOrdersSubscription,
      {},
      (data) => {
        const order = data.userOrders;
        if (order.market !== id) return;
        setOrders((known) => new Map(known).set(order.id, order));
        loadBalances();
        if (/[1-9]/.test(order.filledQuantity)) loadFills();
      },
      setError,
    );
    return stop;
  }, [me, id, loadOrders, loadBalances, loadFills]);

  if (market === undefined) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="the market" />}</main>;
  if (market === null) {
    return (
      <main>
        <h1>No market {id}</h1>
        <p>
          <Link href="/">See the markets</Link>
        </p>
      </main>
    );
  }
  return (
    <main className="market">
      <TickerBar market={market} perpetual={perpetual} />
      <ErrorMessage error={error} />
      <div className="market-grid">
        <Panel title="Chart" id="chart">
          <CandleChart market={market.id} />
        </Panel>
        <Panel title="Order book" id="book">
          <BookView market={market} />
        </Panel>
        <Panel title="Trades" id="trades">
          <TradesView market={market} />
        </Panel>
        <Panel title="Place an order" id="order-form">
          {me ? (
            <OrderForm
              market={market}
              perpetual={perpetual}
              onPlaced={() => {
                loadOrders();
                loadBalances();
              }}
            />
          ) : (
            <p>
              <Link href="/signin">Sign in</Link> to trade.
            </p>
          )}
        </Panel>
        {me && perpetual ? (
          <Panel title="Your position" id="my-position">
            <MarketPosition
              id={market.id}
              lastFill={fills[0]?.id ?? ''}
              onClosed={() => {
                loadOrders();
                loadBalances();
              }}
            />
          </Panel>
        ) : null}
        {me ? (
          <>
            <Panel title="Your orders" id="my-orders">
              <MyOrders market={market} orders={[...orders.values()]} />
            </Panel>
            <Panel title="Your fills" id="my-fills">
              <Fills market={market} fills={fills} />
            </Panel>
            <Panel title="Balances" id="market-balances">
              {/* A perpetual market is settled in its collateral only: the base never moves. */}
              <BalanceRows balances={balances.filter((b) => (b.asset === market.base.symbol && !perpetual) || b.asset === market.quote.symbol)} />
            </Panel>
          </>
        ) : null}
      </div>
    </main>
  );
}

function TickerBar({ market, perpetual }: { market: MarketInfo; perpetual: boolean }) {
  const [ticker, setTicker] = useState<Ticker | null>(null);
  useEffect(() => subscribe(TickerSubscription, { market: market.id }, (data) => setTicker(data.ticker), () => {}), [market.id]);
  const change = ticker?.changePercent;
  return (
    <header className="ticker">
      <h1>{market.id}</h1>
      {!market.trading ? <p className="badge halted">Halted</p> : null}
      <dl>
        <div>
          <dt>Last</dt>
          <dd data-testid="last-price">{formatDecimal(ticker?.lastPrice)}</dd>
        </div>
        <div>
          <dt>24 h change</dt>
          <dd className={change?.startsWith('-') ? 'down' : 'up'}>{change == null ? '—' : `${change}%`}</dd>
        </div>
        <div>
          <dt>24 h high</dt>
          <dd>{formatDecimal(ticker?.high)}</dd>
        </div>
        <div>
          <dt>24 h low</dt>
          <dd>{formatDecimal(ticker?.low)}</dd>
        </div>
        <div>
          <dt>24 h volume ({market.base.symbol})</dt>
          <dd>{formatDecimal(ticker?.volume, market.base.scale)}</dd>
        </div>
        {perpetual ? <PerpetualFigures id={market.id} /> : null}
      </dl>
    </header>
  );
}

function BookView({ market }: { market: MarketInfo }) {
  const [book, setBook] = useState<Book | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => subscribe(BookSubscription, { market: market.id }, (data) => setBook(data.orderBook), setError), [market.id]);
  if (!book) return error ? <ErrorMessage error={error} /> : <Loading what="the book" />;
  const side = (levels: Book['bids'], name: string, className: string) => (
    <table className={`data book ${className}`} aria-label={name}>
      <TableHead columns={[[`Price (${market.quote.symbol})`, 'number'], [`Quantity (${market.base.symbol})`, 'number']]} />
      <tbody>
        {levels.map((level) => (
          <tr key={level.price}>
            <td className="number">{level.price}</td>
            <td className="number">{level.quantity}</td>
          </tr>
        ))}
        {levels.length === 0 ? (
          <tr>
            <td colSpan={2}>None</td>
          </tr>
        ) : null}
      </tbody>
    </table>
  );
  return (
    <div className="book-sides">
      {side([...book.asks].reverse(), 'Asks', 'asks')}
      {side(book.bids, 'Bids', 'bids')}
    </div>
  );
}

function TradesView({ market }: { market: MarketInfo }) {
  const [trades, setTrades] = useState<Trade[]>([]);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    setTrades([]);
    return subscribe(TradesSubscription, { market: market.id }, (data) => setTrades((known) => [data.trades, ...known.filter((t) => t.id !== data.trades.id)].slice(0, 50)), setError);
  }, [market.id]);
  return (
    <>
      <ErrorMessage error={error} />
      <table className="data" aria-label="Latest trades">
        <TableHead columns={[['Price', 'number'], ['Quantity', 'number'], 'Time']} />
        <tbody>
          {trades.map((trade) => (
            <tr key={trade.id}>
              <td className={`number ${trade.takerSide === 'BUY' ? 'up' : 'down'}`}>{trade.price}</td>
              <td className="number">{trade.quantity}</td>
              <td>{new Date(trade.createdAt).toLocaleTimeString()}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {trades.length === 0 ? <p>No trades yet.</p> : null}
    </>
  );
}

/// A perpetual market's mark, index and funding: the query's for the
/// first render, then live (markPrice carries every figure shown here,
/// the next funding time too once a funding is paid), so nothing is asked
/// again unless the subscription fails.
function PerpetualFigures({ id }: { id: string }) {
  const { data } = useQuery(PerpetualMarketsQuery);
  const marks = useLiveMarks([id]);
  const queried = data?.perpetualMarkets.find((p) => p.id === id);
  if (!queried) return null;
  const m = withMark(queried, marks.get(id));
  return (
    <>
      <div>
        <dt>Mark</dt>
        <dd data-testid="mark-price">{formatDecimal(m.markPrice)}</dd>
      </div>
      <div>
        <dt>Index</dt>
        <dd data-testid="index-price">{m.indexPrice ? formatDecimal(m.indexPrice) : 'stale'}</dd>
      </div>
      <div>
        <dt>Funding / {intervalOf(m.fundingIntervalMs)}</dt>
        <dd>{formatPercent(m.fundingRate)}</dd>
      </div>
      <div>
        <dt>Next funding</dt>
        <dd>
          <FundingCountdown at={m.nextFundingTime} />
        </dd>
      </div>
    </>
  );
}

/// The trader's position on this perpetual market, as on the Perpetuals
/// page: live, and asked again at once on a new fill; and its closing in
/// one step, after which `onClosed` reloads the orders and balances.
function MarketPosition({ id, lastFill, onClosed }: { id: string; lastFill: string; onClosed: () => void }) {
  const { positions, error, reload } = usePositions(true);
  const markets = useQuery(PerpetualMarketsQuery);
  const [closed, setClosed] = useState<string | null>(null);
  useEffect(() => {
    if (lastFill) reload();
  }, [lastFill, reload]);
  const market = markets.data?.perpetualMarkets.find((m) => m.id === id);
  const here = positions?.filter((p) => p.market === id && p.side !== 'FLAT') ?? [];
  return (
    <>
      <ErrorMessage error={error} />
      {!positions ? (
        error ? null : <Loading what="your position" />
      ) : (
        <PositionTable positions={here} markets={markets.data?.perpetualMarkets ?? []} label="Your position" empty="No position on this market." />
      )}
      {here[0] && market ? (
        <ClosePosition
          key={here[0].side}
          position={here[0]}
          market={market}
          onClosed={(said) => {
            setClosed(said);
            reload();
            onClosed();
          }}
        />
      ) : null}
      {closed ? (
        <p role="status" className="placed">
          {closed}
        </p>
      ) : null}
      <p>
        <Link href="/perpetuals">Leverage, margin mode and margin</Link>
      </p>
    </>
  );
}

type OrderType = 'LIMIT' | 'MARKET' | 'STOP_LOSS' | 'STOP_LOSS_LIMIT' | 'TAKE_PROFIT' | 'TAKE_PROFIT_LIMIT';
const ORDER_TYPES: [OrderType, string][] = [
  ['LIMIT', 'Limit'],
  ['MARKET', 'Market'],
  ['STOP_LOSS', 'Stop-loss (market)'],
  ['STOP_LOSS_LIMIT', 'Stop-loss limit'],
  ['TAKE_PROFIT', 'Take-profit (market)'],
  ['TAKE_PROFIT_LIMIT', 'Take-profit limit'],
];
const HAS_PRICE = new Set<OrderType>(['LIMIT', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT']);
const HAS_TRIGGER = new Set<OrderType>(['STOP_LOSS', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT', 'TAKE_PROFIT_LIMIT']);

type TriggerSource = 'LAST_PRICE' | 'MARK_PRICE';
const TRIGGER_SOURCES: [TriggerSource, string][] = [
  ['LAST_PRICE', 'Last price'],
  ['MARK_PRICE', 'Mark price'],
];

function OrderForm({ market, perpetual, onPlaced }: { market: MarketInfo; perpetual: boolean; onPlaced: () => void }) {
  const [side, setSide] = useState<'BUY' | 'SELL'>('BUY');
  const [type, setType] = useState<OrderType>('LIMIT');
  const [price, setPrice] = useState('');
  const [trigger, setTrigger] = useState('');
  const [quantity, setQuantity] = useState('');
  const [timeInForce, setTimeInForce] = useState<'GTC' | 'IOC' | 'FOK'>('GTC');
  const [triggerSource, setTriggerSource] = useState<TriggerSource>('LAST_PRICE');
  const [reduceOnly, setReduceOnly] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [placed, setPlaced] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const priceDigits = digitsOf(market.tickSize);
  const quantityDigits = digitsOf(market.lotSize);
  // Every order on a perpetual market has a price: a market order's is its protection price, which sizes its margin.
  const hasPrice = HAS_PRICE.has(type) || perpetual;

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setPlaced(null);
    setBusy(true);
    try {
      const result = await request(PlaceOrderMutation, {
        input: {
          market: market.id,
          side,
          type,
          quantity: quantity.trim(),
          price: hasPrice ? price.trim() : null,
          triggerPrice: HAS_TRIGGER.has(type) ? trigger.trim() : null,
          triggerSource: HAS_TRIGGER.has(type) && perpetual ? triggerSource : undefined,
          timeInForce: HAS_PRICE.has(type) ? timeInForce : null,
          reduceOnly: perpetual ? reduceOnly : undefined,
        },
      });
      onPlaced();
      const order = result.placeOrder;
      setPlaced(`Order ${order.id}: ${words(order.status)}${order.reduceOnly ? ', reduce only' : ''}${order.rejectReason ? ` (${order.rejectReason})` : ''}`);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Form onSubmit={submit} aria-label="Place an order" className="order-form">
      <RadioGroup value={side} onChange={(value) => setSide(value as 'BUY' | 'SELL')} orientation="horizontal">
        <Label>Side</Label>
        <Radio value="BUY">Buy</Radio>
        <Radio value="SELL">Sell</Radio>
      </RadioGroup>
      <Choice label="Type" options={ORDER_TYPES} value={type} onChange={setType} />
      {HAS_TRIGGER.has(type) ? (
        <TextField name="triggerPrice" isRequired inputMode="decimal" value={trigger} onChange={setTrigger} validate={(v) => (isDecimal(v, priceDigits) ? null : `A price in steps of ${market.tickSize}`)}>
          <Label>Trigger price ({market.quote.symbol})</Label>
          <Input />
        </TextField>
      ) : null}
      {HAS_TRIGGER.has(type) && perpetual ? <Choice label="Trigger on" options={TRIGGER_SOURCES} value={triggerSource} onChange={setTriggerSource} /> : null}
      {hasPrice ? (
        <TextField name="price" isRequired inputMode="decimal" value={price} onChange={setPrice} validate={(v) => (isDecimal(v, priceDigits) ? null : `A price in steps of ${market.tickSize}`)}>
          <Label>
            {HAS_PRICE.has(type) ? 'Price' : 'Protection price'} ({market.quote.symbol})
          </Label>
          <Input />
        </TextField>
      ) : null}
      <TextField name="quantity" isRequired inputMode="decimal" value={quantity} onChange={setQuantity} validate={(v) => (isDecimal(v, quantityDigits) ? null : `A quantity in steps of ${market.lotSize}`)}>
        <Label>Quantity ({market.base.symbol})</Label>
        <Input />
      </TextField>
      {HAS_PRICE.has(type) ? (
        <RadioGroup value={timeInForce} onChange={(value) => setTimeInForce(value as 'GTC' | 'IOC' | 'FOK')} orientation="horizontal">
          <Label>Time in force</Label>
          <Radio value="GTC">Good till cancelled</Radio>
          <Radio value="IOC">Immediate or cancel</Radio>
          <Radio value="FOK">Fill or kill</Radio>
        </RadioGroup>
      ) : null}
      {perpetual ? (
        <>
          <Checkbox isSelected={reduceOnly} onChange={setReduceOnly} name="reduceOnly">
            <span className="box" aria-hidden="true" />
            Reduce only
          </Checkbox>
          {reduceOnly ? <p className="hint">Only shrinks your position: refused if it would open or grow one, or if your other reduce-only orders on this side already cover the position; cancelled if the position changes so that it no longer would.</p> : null}
        </>
      ) : null}
      <ErrorMessage error={error} />
      {placed ? (
        <p role="status" className="placed">
          {placed}
        </p>
      ) : null}
      <Button type="submit" isDisabled={busy} className={side === 'BUY' ? 'primary buy' : 'primary sell'}>
        {busy ? 'Placing…' : `${side === 'BUY' ? 'Buy' : 'Sell'} ${market.base.symbol}`}
      </Button>
    </Form>
  );
}

function MyOrders({ market, orders }: { market: MarketInfo; orders: Order[] }) {
  const [error, setError] = useState<unknown>(null);
  const open = orders.filter((o) => OPEN.has(o.status)).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  const done = orders.filter((o) => !OPEN.has(o.status)).sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, 20);
  async function cancel(id: string) {
    setError(null);
    try {
      await request(CancelOrderMutation, { id });
    } catch (failure) {
      setError(failure);
    }
  }
  const rows = (list: Order[], withCancel: boolean) =>
    list.map((order) => (
      <tr key={order.id} data-order-id={order.id}>
        <td className={order.side === 'BUY' ? 'up' : 'down'}>{order.side === 'BUY' ? 'Buy' : 'Sell'}</td>
        <td>
          {words(order.type)}
          {order.reduceOnly ? (
            <>
              {' '}
              <span className="tag">reduce only</span>
            </>
          ) : null}
        </td>
        <td className="number">{order.price ?? (order.triggerPrice ? `at ${order.triggerPrice}` : 'market')}</td>
        <td className="number">
          {order.filledQuantity} / {order.quantity}
        </td>
        <td>{words(order.status)}</td>
        <td>
          {withCancel ? (
            <div className="row-actions">
              <Button onPress={() => cancel(order.id)} aria-label={`Cancel order ${order.id}`}>
                Cancel
              </Button>
              {order.type === 'LIMIT' ? <Amend market={market} order={order} /> : null}
            </div>
          ) : null}
          {order.amendRefused ? <span className="muted"> amend refused: {order.amendRefused}</span> : null}
        </td>
      </tr>
    ));
  const head = (
    <TableHead columns={['Side', 'Type', [`Price (${market.quote.symbol})`, 'number'], [`Filled / quantity (${market.base.symbol})`, 'number'], 'Status']} actions />
  );
  return (
    <>
      <ErrorMessage error={error} />
      <h3>Open</h3>
      {open.length ? (
        <table className="data" aria-label="Open orders">
          {head}
          <tbody>{rows(open, true)}</tbody>
        </table>
      ) : (
        <p>No open orders.</p>
      )}
      <h3>Recent</h3>
      {done.length ? (
        <table className="data" aria-label="Recent orders">
          {head}
          <tbody>{rows(done, false)}</tbody>
        </table>
      ) : (
        <p>None yet.</p>
      )}
    </>
  );
}

/// A resting limit order's new price or total quantity (what filled included).
function Amend({ market, order }: { market: MarketInfo; order: Order }) {
  const [open, setOpen] = useState(false);
  const [price, setPrice] = useState(order.price ?? '');
  const [quantity, setQuantity] = useState(order.quantity);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  if (!open) {
    return (
      <Button onPress={() => setOpen(true)} aria-label={`Amend order ${order.id}`}>
        Amend
      </Button>
    );
  }
  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await request(AmendOrderMutation, {
        id: order.id,
        price: price.trim() !== order.price ? price.trim() : null,
        quantity: quantity.trim() !== order.quantity ? quantity.trim() : null,
      });
      setOpen(false);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Form onSubmit={submit} aria-label={`Amend order ${order.id}`} className="amend">
      <Field label={`Price (${market.quote.symbol})`} name="price" isRequired inputMode="decimal" value={price} onChange={setPrice} validate={(v) => (isDecimal(v, digitsOf(market.tickSize)) ? null : `In steps of ${market.tickSize}`)} />
      <Field label={`Total quantity (${market.base.symbol})`} name="quantity" isRequired inputMode="decimal" value={quantity} onChange={setQuantity} validate={(v) => (isDecimal(v, digitsOf(market.lotSize)) ? null : `In steps of ${market.lotSize}`)} />
      <ErrorMessage error={error} />
      <div className="row-actions">
        <Button type="submit" isDisabled={busy}>
          {busy ? 'Amending…' : 'Save'}
        </Button>
        <Button onPress={() => setOpen(false)}>Keep as it was</Button>
      </div>
    </Form>
  );
}

function Fills({ market, fills }: { market: MarketInfo; fills: Fill[] }) {
  if (fills.length === 0) return <p>No fills yet.</p>;
  return (
    <table className="data" aria-label="Your fills">
      <TableHead columns={['When', 'Side', [`Price (${market.quote.symbol})`, 'number'], [`Quantity (${market.base.symbol})`, 'number'], ['Fee', 'number']]} />
      <tbody>
        {fills.map((fill) => (
          <tr key={fill.id} data-fill-id={fill.id}>
            <td>
              <When at={fill.createdAt} />
            </td>
            <td className={fill.side === 'BUY' ? 'up' : 'down'}>{fill.side === 'BUY' ? 'Buy' : fill.side === 'SELL' ? 'Sell' : ''}</td>
            <td className="number">{fill.price}</td>
            <td className="number">{fill.quantity}</td>
            <td className="number">
              {formatDecimal(fill.fee)} {fill.feeAsset ?? ''}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function BalanceRows({ balances }: { balances: Balance[] }) {
  if (balances.length === 0) return <p>No balances yet.</p>;
  return (
    <table className="data" aria-label="Balances">
      <TableHead columns={['Asset', ['Available', 'number'], ['Locked in orders and withdrawals', 'number']]} />
      <tbody>
        {balances.map((balance) => (
          <tr key={balance.asset} data-asset={balance.asset}>
            <th scope="row">{balance.asset}</th>
            <td className="number">{formatDecimal(balance.available)}</td>
            <td className="number">{formatDecimal(balance.locked)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

