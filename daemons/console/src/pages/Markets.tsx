import { Link } from 'wouter';
import { ErrorMessage, Loading, TableHead, useQuery } from '../components';
import { formatDecimal } from '../decimal';
import { graphql } from '../graphql';

const MarketsQuery = graphql(`
  query Markets {
    markets { id trading base { symbol scale } quote { symbol scale } }
    tickers { market lastPrice change changePercent high low volume quoteVolume trades }
    perpetualMarkets { id }
  }
`);

/// Every spot market with its last 24 hours (perpetual futures have their own page).
export function Markets() {
  const { data, error } = useQuery(MarketsQuery);
  if (error) return <main><ErrorMessage error={error} /></main>;
  if (!data) return <main><Loading what="markets" /></main>;
  const tickers = new Map(data.tickers.map((ticker) => [ticker.market, ticker]));
  const perpetual = new Set(data.perpetualMarkets.map((market) => market.id));
  const spot = data.markets.filter((market) => !perpetual.has(market.id));
  return (
    <main>
      <h1>Markets</h1>
      <table className="data">
        <caption className="visually-hidden">Markets and their last 24 hours</caption>
        <TableHead columns={['Market', ['Last price', 'number'], ['24 h change', 'number'], ['24 h high', 'number'], ['24 h low', 'number'], ['24 h volume', 'number'], 'Status']} />
        <tbody>
          {spot.map((market) => {
            const ticker = tickers.get(market.id);
            const change = ticker?.changePercent;
            return (
              <tr key={market.id}>
                <th scope="row">
                  <Link href={`/trade/${market.id}`}>{market.id}</Link>
                </th>
                <td className="number">{formatDecimal(ticker?.lastPrice)}</td>
                <td className={`number ${change?.startsWith('-') ? 'down' : change && change !== '0' ? 'up' : ''}`}>
                  {change == null ? '—' : `${change.startsWith('-') ? '' : '+'}${change}%`}
                </td>
                <td className="number">{formatDecimal(ticker?.high)}</td>
                <td className="number">{formatDecimal(ticker?.low)}</td>
                <td className="number">
                  {formatDecimal(ticker?.volume ?? '0', market.base.scale)} {market.base.symbol}
                </td>
                <td>{market.trading ? 'Trading' : 'Halted'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {spot.length === 0 ? <p>No markets yet: operators create them with createMarket.</p> : null}
      {perpetual.size ? (
        <p>
          Perpetual futures, with their marks, funding and your positions, are <Link href="/perpetuals">on their own page</Link>.
        </p>
      ) : null}
    </main>
  );
}
