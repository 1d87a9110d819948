import { ErrorMessage, Loading, Panel, TableHead, useQuery } from '../components';
import { formatDecimal } from '../decimal';
import { graphql } from '../graphql';
import { BalanceRows } from './Market';

const WalletQuery = graphql(`
  query Wallet {
    balances { asset available locked }
    ledgerEntries(limit: 50) { id asset amount kind reference createdAt }
  }
`);

/// The trader's balances and the latest entries of their ledger history.
export function Balances() {
  const { data, error } = useQuery(WalletQuery);
  if (error) return <main><ErrorMessage error={error} /></main>;
  if (!data) return <main><Loading what="balances" /></main>;
  return (
    <main>
      <h1>Wallet</h1>
      <Panel title="Balances">
        <BalanceRows balances={data.balances} />
      </Panel>
      <Panel title="History">
        {data.ledgerEntries.length ? (
          <table className="data" aria-label="Ledger history">
            <TableHead columns={['When', 'Asset', 'Kind', ['Amount', 'number'], 'Reference']} />
            <tbody>
              {data.ledgerEntries.map((entry) => (
                <tr key={entry.id}>
                  <td>{new Date(entry.createdAt).toLocaleString()}</td>
                  <td>{entry.asset}</td>
                  <td>{entry.kind.toLowerCase().replace(/_/g, ' ')}</td>
                  <td className="number">{formatDecimal(entry.amount)}</td>
                  <td>{entry.reference ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p>Nothing yet.</p>
        )}
      </Panel>
    </main>
  );
}
