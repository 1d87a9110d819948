// An operator's view of a user as an investor: whether they may issue
// tokens, and the claims tokens' rules read (country, category, expiry,
// the tax withheld from their distributions). Both are proposals.
import { useState } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, Choice, ErrorMessage, Field, Loading, useQuery, useSubmit, words } from '../components';
import { formatPercent } from '../decimal';
import { graphql } from '../graphql';

const InvestorQuery = graphql(`
  query InvestorStanding($email: String!) {
    investorClaims(email: $email) { country category expiresAt withholdingRate }
    issuers { id }
  }
`);

const SetIssuerMutation = graphql(`
  mutation SetIssuer($email: String!, $issuer: Boolean!) {
    setIssuer(email: $email, issuer: $issuer)
  }
`);

const SetClaimsMutation = graphql(`
  mutation SetInvestorClaims($email: String!, $country: Int!, $category: InvestorCategory!, $expiresAt: DateTime!, $withholdingRate: Decimal) {
    setInvestorClaims(email: $email, country: $country, category: $category, expiresAt: $expiresAt, withholdingRate: $withholdingRate) { country }
  }
`);

type Category = 'RETAIL' | 'ACCREDITED' | 'PROFESSIONAL';

export function InvestorStanding({ userId, email }: { userId: string; email: string }) {
  const { data, error, reload } = useQuery(InvestorQuery, { email });
  const [country, setCountry] = useState('');
  const [category, setCategory] = useState<Category>('RETAIL');
  const [days, setDays] = useState('365');
  const [rate, setRate] = useState('0');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error: formError, submit } = useSubmit();
  if (!data) return error ? <ErrorMessage error={error} /> : <Loading what="investor claims" />;
  const issuer = data.issuers.some((u) => u.id === userId);
  const claims = data.investorClaims;
  const run = submit(async () => {
    setSaid(null);
    const expiresAt = new Date(Date.now() + Number(days) * 86_400_000).toISOString();
    await request(SetClaimsMutation, { email, country: Number(country), category, expiresAt, withholdingRate: rate.trim() });
    setSaid('Investor claims set.');
    reload();
  });
  return (
    <section aria-label={`${email} as an investor`}>
      <dl className="facts">
        <dt>Issuer</dt>
        <dd data-testid="user-issuer">{issuer ? 'yes' : 'no'}</dd>
        <dt>Investor claims</dt>
        <dd data-testid="user-claims">
          {claims
            ? `country ${claims.country}, ${words(claims.category)}, until ${new Date(claims.expiresAt).toLocaleDateString()}, ${formatPercent(claims.withholdingRate, 2)} withheld`
            : 'none (not a verified investor)'}
        </dd>
      </dl>
      <div className="columns">
        <ActionButton action={() => request(SetIssuerMutation, { email, issuer: !issuer })} onDone={reload}>
          {issuer ? 'Propose: no longer an issuer' : 'Propose as an issuer'}
        </ActionButton>
        <Form onSubmit={run} aria-label="Set investor claims">
          <Field label="Country (ISO 3166-1 numeric)" name="country" isRequired inputMode="numeric" value={country} onChange={setCountry} validate={(v) => (v === '' || /^[1-9][0-9]{0,2}$/.test(v) ? null : '1 to 999')} />
          <Choice
            label="Category"
            options={[
              ['RETAIL', 'retail'],
              ['ACCREDITED', 'accredited'],
              ['PROFESSIONAL', 'professional'],
            ]}
            value={category}
            onChange={setCategory}
          />
          <Field label="Valid for (days)" name="days" isRequired inputMode="numeric" value={days} onChange={setDays} validate={(v) => (v === '' || /^[1-9][0-9]{0,4}$/.test(v) ? null : 'A number of days')} />
          <Field label="Tax withheld (a fraction, 0.128 for 12.8%)" name="withholding" isRequired inputMode="decimal" value={rate} onChange={setRate} />
          <ErrorMessage error={formError} />
          {said ? <p role="status">{said}</p> : null}
          <Button type="submit" isDisabled={busy}>
            {busy ? 'Working…' : 'Propose claims'}
          </Button>
        </Form>
      </div>
    </section>
  );
}
