import { useEffect, useState } from 'react';
import { Link } from 'wouter';
import { request } from '../api';
import { ErrorMessage, Loading } from '../components';
import { formatDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';

const MarketsQuery = graphql(`
  query Markets {
    markets { id trading base { symbol scale } quote { symbol scale } }
    tickers { market lastPrice change changePercent high low volume quoteVolume trades }
  }
`);

type Data = ResultOf<typeof MarketsQuery>;

/// Every market with its last 24 hours.
export function Markets() {
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    request(MarketsQuery).then(setData, setError);
  }, []);
  if (error) return <main><ErrorMessage error={error} /></main>;
  if (!data) return <main><Loading what="markets" /></main>;
  const tickers = new Map(data.tickers.map((ticker) => [ticker.market, ticker]));
  return (
    <main>
      <h1>Markets</h1>
      <table className="data">
        <caption className="visually-hidden">Markets and their last 24 hours</caption>
        <thead>
          <tr>
            <th scope="col">Market</th>
            <th scope="col" className="number">Last price</th>
            <th scope="col" className="number">24 h change</th>
            <th scope="col" className="number">24 h high</th>
            <th scope="col" className="number">24 h low</th>
            <th scope="col" className="number">24 h volume</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
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
