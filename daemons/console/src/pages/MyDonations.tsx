// A donor's gifts: each with its receipt (number and PDF), its value in
// the campaign's reference asset when it came, and where it stands (held
// by the campaign, paid out, refunded); the annual statements, as PDFs,
// of every year they gave in.
import { useState } from 'react';
import { Button } from 'react-aria-components';
import { Link } from 'wouter';
import { ErrorMessage, Loading, Panel, TableHead, When, useQuery } from '../components';
import { formatDecimal } from '../decimal';
import { receiptHref, statementHref } from '../donations';
import { graphql } from '../graphql';

const PAGE = 50;

const MyDonationsQuery = graphql(`
  query MyDonations($before: ID, $limit: Int) {
    myDonations(before: $before, limit: $limit) {
      id campaignId campaignTitle organisation receiptNumber asset gross fee net tip value referenceAsset conversionId status at settledAt
      publicName amountShown knownToOrganiser depositReference matches { asset amount }
    }
  }
`);

const STATUS: Record<'HELD' | 'PAID_OUT' | 'REFUNDED', string> = {
  HELD: 'held by the campaign',
  PAID_OUT: 'paid to the organiser',
  REFUNDED: 'refunded to you (receipt void)',
};

export function MyDonations() {
  // Pages back through the gifts: each `before` is the oldest shown so far.
  const [pages, setPages] = useState<(string | null)[]>([null]);
  return (
    <main>
      <h1>Your donations</h1>
      <Statements />
      <Panel title="Your gifts" id="my-gifts">
        {pages.map((before, index) => (
          <GiftPage key={before ?? 'newest'} before={before} last={index === pages.length - 1} onOlder={(id) => setPages([...pages, id])} />
        ))}
      </Panel>
    </main>
  );
}

function GiftPage({ before, last, onOlder }: { before: string | null; last: boolean; onOlder: (before: string) => void }) {
  const { data, error } = useQuery(MyDonationsQuery, { before, limit: PAGE }, { refreshMs: before ? undefined : 10_000 });
  if (!data) return error ? <ErrorMessage error={error} /> : <Loading what="your gifts" />;
  const gifts = data.myDonations;
  if (!gifts.length) {
    return before ? null : (
      <p>
        No gifts yet. <Link href="/campaigns">See the campaigns taking gifts</Link>
      </p>
    );
  }
  return (
    <>
      <ErrorMessage error={error} />
      <table className="data" aria-label={before ? `Your gifts before ${before}` : 'Your gifts'}>
        <TableHead columns={['Date', 'Campaign', ['Amount', 'number'], ['Tip', 'number'], ['Value', 'number'], 'Receipt number', 'Status', 'Receipt']} />
        <tbody>
          {gifts.map((g) => (
            <tr key={g.id} data-donation-id={g.id}>
              <td>
                <When at={g.at} />
              </td>
              <td>
                <Link href={`/campaigns/${g.campaignId}`}>{g.campaignTitle}</Link>
                <span className="muted"> to {g.organisation}</span>
                {g.publicName ? <span className="tag">shown as {g.publicName}</span> : <span className="tag">anonymous</span>}
              </td>
              <td className="number">
                {formatDecimal(g.gross)} {g.asset}
              </td>
              <td className="number">
                {formatDecimal(g.tip)} {g.asset}
              </td>
              <td className="number">
                {formatDecimal(g.value)} {g.referenceAsset}
                {g.conversionId ? <span className="muted"> converted when received</span> : null}
              </td>
              <td data-testid="receipt-number">{g.receiptNumber}</td>
              <td data-testid="donation-status">{STATUS[g.status]}</td>
              <td>
                <a href={receiptHref(g.id)} aria-label={`Receipt ${g.receiptNumber} (PDF)`}>
                  PDF
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {last && gifts.length === PAGE ? <Button onPress={() => onOlder(gifts[gifts.length - 1].id)}>Older gifts</Button> : null}
    </>
  );
}

const YearsQuery = graphql(`
  query DonationYears {
    myDonations(limit: 1000) { id at }
  }
`);

/// The years (UTC, as the statements count them) the donor gave in, newest first.
function Statements() {
  const { data, error } = useQuery(YearsQuery);
  if (!data) return error ? <ErrorMessage error={error} /> : null;
  const years = [...new Set(data.myDonations.map((g) => Number(g.at.slice(0, 4))))].sort((a, b) => b - a);
  if (!years.length) return null;
  return (
    <Panel title="Annual statements" id="statements">
      <p className="muted">Every gift of a year with its receipt number, for your tax return.</p>
      <ul className="links">
        {years.map((year) => (
          <li key={year}>
            <a href={statementHref(year)}>Statement for {year} (PDF)</a>
          </li>
        ))}
      </ul>
    </Panel>
  );
}
