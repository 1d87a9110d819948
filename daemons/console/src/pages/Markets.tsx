import { Link } from 'wouter';
import { ErrorMessage, Loading, TableHead, useQuery } from '../components';
import { formatDecimal } from '../decimal';
import { graphql } from '../graphql';

const MarketsQuery = graphql(`
  query Markets {
    markets { id trading base { symbol scale } quote { symbol scale } }
    tickers { market lastPrice change changePercent high low volume quoteVolume trades }
  }
`);

/// Every market with its last 24 hours.
export function Markets() {
  const { data, error } = useQuery(MarketsQuery);
  if (error) return <main><ErrorMessage error={error} /></main>;
  if (!data) return <main><Loading what="markets" /></main>;
  const tickers = new Map(data.tickers.map((ticker) => [ticker.market, ticker]));
  return (
    <main>
      <h1>Markets</h1>
      <table className="data">
        <caption className="visually-hidden">Markets and their last 24 hours</caption>
        <TableHead columns={['Market', ['Last price', 'number'], ['24 h change', 'number'], ['24 h high', 'number'], ['24 h low', 'number'], ['24 h volume', 'number'], 'Status']} />
        <tbody>
          {data.markets.map((market) => {
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
      {data.markets.length === 0 ? <p>No markets yet: operators create them with createMarket.</p> : null}
    </main>
  );
}
