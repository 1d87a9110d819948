// The operators' donations page: verified organisers (verify one, or no
// longer), the platform's fee on gifts, the campaigns due a payout (a
// proposal each, approved under four-eyes), crediting a gift that came from
// outside, and stopping a campaign. Every change is a proposal, as every
// operator action; Approvals decides it.
import { useState } from 'react';
import { Label, Radio, RadioGroup } from 'react-aria-components';
import { Link } from 'wouter';
import { request } from '../api';
import { ActionButton, ErrorMessage, Field, Loading, Panel, TableHead, When, useQuery } from '../components';
import { formatDecimal, formatPercent, isDecimal } from '../decimal';
import { Confirm, Progress, statusOf } from '../donations';
import { graphql, type ResultOf } from '../graphql';
import { bpsToRate } from './Campaigns';
import { OperatorPage, ProposalForm } from './Operator';

const DonationsAdminQuery = graphql(`
  query DonationsAdmin {
    organisers { user email name kind country registration }
    donationFeeBps
    payoutsDue {
      id title referenceAsset goal raised progress deadline status cancelled donations model
      organiser { user name }
      assets { asset held }
    }
    active: campaigns(status: ACTIVE, limit: 200) {
      id title referenceAsset goal raised progress deadline status cancelled donations model
      organiser { user name }
    }
    ended: campaigns(status: ENDED, limit: 200) {
      id title referenceAsset goal raised progress deadline status cancelled donations model
      organiser { user name }
    }
  }
`);

const SetOrganiserMutation = graphql(`
  mutation SetOrganiser($email: String!, $name: String!, $kind: OrganiserKind!, $country: Int!, $registration: String) {
    setOrganiser(email: $email, name: $name, kind: $kind, country: $country, registration: $registration) { user name }
  }
`);

const RemoveOrganiserMutation = graphql(`
  mutation RemoveOrganiser($email: String!) {
    removeOrganiser(email: $email)
  }
`);

const SetDonationFeeMutation = graphql(`
  mutation SetDonationFee($feeBps: Int!) {
    setDonationFee(feeBps: $feeBps)
  }
`);

const PayOutMutation = graphql(`
  mutation PayOutCampaign($id: ID!) {
    payOutCampaign(id: $id) { id donations last lines { asset net fees tips } }
  }
`);

const StopCampaignMutation = graphql(`
  mutation StopCampaign($id: ID!) {
    stopCampaign(id: $id)
  }
`);

const CreditDonationDepositMutation = graphql(`
  mutation CreditDonationDeposit($paymentReference: String!, $asset: String!, $amount: Decimal!, $reference: String!, $displayName: String) {
    creditDonationDeposit(paymentReference: $paymentReference, asset: $asset, amount: $amount, reference: $reference, displayName: $displayName) {
      id campaignTitle receiptNumber gross asset
    }
  }
`);

type Data = ResultOf<typeof DonationsAdminQuery>;

export function DonationsAdmin() {
  const { data, error, reload } = useQuery(DonationsAdminQuery, undefined, { refreshMs: 5_000 });
  return (
    <OperatorPage title="Donations">
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="donations" />
      ) : (
        <>
          <Panel title="Payouts due" id="payouts-due">
            <PayoutsDue campaigns={data.payoutsDue} onDone={reload} />
          </Panel>
          <Panel title="Organisers" id="organisers">
            <Organisers organisers={data.organisers} onDone={reload} />
          </Panel>
          <div className="columns">
            <Panel title="Fee on gifts" id="donation-fee">
              <DonationFee feeBps={data.donationFeeBps} onDone={reload} />
            </Panel>
            <Panel title="Credit a gift from outside" id="credit-gift">
              <CreditGift onDone={reload} />
            </Panel>
          </div>
          <Panel title="Campaigns" id="admin-campaigns">
            <Campaigns campaigns={[...data.active, ...data.ended]} onDone={reload} />
          </Panel>
        </>
      )}
    </OperatorPage>
  );
}

function PayoutsDue({ campaigns, onDone }: { campaigns: Data['payoutsDue']; onDone: () => void }) {
  const [said, setSaid] = useState<string | null>(null);
  if (!campaigns.length) return <p>No campaign is due a payout now.</p>;
  return (
    <>
      <p className="muted">Paying out sends each campaign's held gifts, less the platform's fee, and its matches to its organiser, and the fees and tips to the house. The organiser may not approve it.</p>
      <table className="data" aria-label="Payouts due">
        <TableHead columns={['Campaign', 'Organiser', 'State', 'Raised', ['Gifts', 'number'], ['Held', 'number'], 'Deadline']} actions />
        <tbody>
          {campaigns.map((c) => (
            <tr key={c.id} data-campaign-id={c.id}>
              <th scope="row">
                <Link href={`/campaigns/${c.id}`}>{c.title}</Link> <span className="muted">(campaign {c.id})</span>
              </th>
              <td>
                {c.organiser.name} <span className="muted">(user {c.organiser.user})</span>
              </td>
              <td>{c.status === 'ACTIVE' ? 'interim payout due' : statusOf(c)}</td>
              <td className="progress-cell">
                <Progress raised={c.raised} goal={c.goal} progress={c.progress} asset={c.referenceAsset} label={`${c.title}: raised towards its goal`} />
              </td>
              <td className="number">{c.donations}</td>
              <td className="number">
                {c.assets
                  .filter((a) => /[1-9]/.test(a.held))
                  .map((a) => `${formatDecimal(a.held)} ${a.asset}`)
                  .join(', ') || '—'}
              </td>
              <td>
                <When at={c.deadline} />
              </td>
              <td>
                <ActionButton
                  label={`Propose to pay out ${c.title}`}
                  action={async () => {
                    const payout = (await request(PayOutMutation, { id: c.id })).payOutCampaign;
                    setSaid(`Campaign ${c.id} paid out: ${payout.lines.map((l) => `${formatDecimal(l.net)} ${l.asset} to its organiser`).join(', ') || 'nothing was held'}.`);
                  }}
                  onDone={onDone}
                >
                  Propose payout
                </ActionButton>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {said ? <p role="status">{said}</p> : null}
    </>
  );
}

function Organisers({ organisers, onDone }: { organisers: Data['organisers']; onDone: () => void }) {
  const [email, setEmail] = useState('');
  const [name, setName] = useState('');
  const [kind, setKind] = useState<'ORGANISATION' | 'PERSON'>('ORGANISATION');
  const [country, setCountry] = useState('');
  const [registration, setRegistration] = useState('');
  return (
    <>
      {organisers.length ? (
        <table className="data" aria-label="Verified organisers">
          <TableHead columns={['User', 'Name', 'Account', 'Kind', 'Registration', 'Country']} actions />
          <tbody>
            {organisers.map((o) => (
              <tr key={o.user} data-organiser={o.user}>
                <td>{o.user}</td>
                <th scope="row">{o.name}</th>
                <td>{o.email ?? '—'}</td>
                <td>{o.kind === 'ORGANISATION' ? 'organisation' : 'person'}</td>
                <td>{o.registration || '—'}</td>
                <td>{o.country}</td>
                <td>
                  {o.email ? (
                    <Confirm
                      label={`Remove ${o.name}`}
                      danger
                      question={`Propose that ${o.name} is no longer an organiser? Their campaigns go on; they open no new ones.`}
                      confirm={() => (
                        <ActionButton action={() => request(RemoveOrganiserMutation, { email: o.email ?? '' })} onDone={onDone} className="danger">
                          Yes, propose it
                        </ActionButton>
                      )}
                    >
                      Remove…
                    </Confirm>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>No organisers verified yet.</p>
      )}
      <div className="columns">
        <div>
          <h3>Verify an organiser</h3>
          <ProposalForm
            label="Propose organiser"
            onDone={onDone}
            submit={async () => {
              const organiser = (
                await request(SetOrganiserMutation, {
                  email: email.trim(),
                  name: name.trim(),
                  kind,
                  country: Number(country),
                  registration: registration.trim() || null,
                })
              ).setOrganiser;
              return `${organiser.name} (user ${organiser.user}) is a verified organiser.`;
            }}
          >
            <Field label="Account email" name="organiserEmail" type="email" isRequired value={email} onChange={setEmail} />
            <Field label="Name on receipts" name="organiserName" isRequired value={name} onChange={setName} />
            <RadioGroup value={kind} onChange={(value) => setKind(value as typeof kind)} orientation="horizontal">
              <Label>Kind</Label>
              <Radio value="ORGANISATION">Organisation</Radio>
              <Radio value="PERSON">Person</Radio>
            </RadioGroup>
            <Field
              label="Country (ISO 3166-1 numeric)"
              name="organiserCountry"
              isRequired
              inputMode="numeric"
              value={country}
              onChange={setCountry}
              validate={(v) => (v === '' || /^[1-9][0-9]{0,2}$/.test(v) ? null : '1 to 999, such as 826')}
            />
            {kind === 'ORGANISATION' ? <Field label="Registration number" name="organiserRegistration" value={registration} onChange={setRegistration} description="The charity register's number, as checked." /> : null}
          </ProposalForm>
        </div>
      </div>
    </>
  );
}

function DonationFee({ feeBps, onDone }: { feeBps: number; onDone: () => void }) {
  const [bps, setBps] = useState('');
  return (
    <>
      <p>
        Now: <strong data-testid="donation-fee">{feeBps} basis points</strong> ({formatPercent(bpsToRate(feeBps), 2)}) of each gift to campaigns started from now on; campaigns keep the fee they started with.
      </p>
      <ProposalForm
        label="Propose fee"
        onDone={onDone}
        submit={async () => `The fee on gifts to new campaigns is ${(await request(SetDonationFeeMutation, { feeBps: Number(bps) })).setDonationFee} basis points.`}
      >
        <Field
          label="Fee (basis points, 0 to 1000)"
          name="feeBps"
          isRequired
          inputMode="numeric"
          value={bps}
          onChange={setBps}
          validate={(v) => (v === '' || (/^\d{1,4}$/.test(v) && Number(v) <= 1000) ? null : '0 to 1000: 250 is 2.5%')}
        />
      </ProposalForm>
    </>
  );
}

function CreditGift({ onDone }: { onDone: () => void }) {
  const [paymentReference, setPaymentReference] = useState('');
  const [asset, setAsset] = useState('');
  const [amount, setAmount] = useState('');
  const [reference, setReference] = useState('');
  const [name, setName] = useState('');
  return (
    <ProposalForm
      label="Propose credit"
      onDone={onDone}
      submit={async () => {
        const gift = (
          await request(CreditDonationDepositMutation, {
            paymentReference: paymentReference.trim(),
            asset: asset.trim(),
            amount: amount.trim(),
            reference: reference.trim(),
            displayName: name.trim() || null,
          })
        ).creditDonationDeposit;
        return `Credited ${formatDecimal(gift.gross)} ${gift.asset} to "${gift.campaignTitle}": receipt ${gift.receiptNumber}.`;
      }}
    >
      <Field label="Payment reference (GIFT-…)" name="paymentReference" isRequired value={paymentReference} onChange={setPaymentReference} description="As the donor wrote it on the transfer." />
      <Field label="Asset" name="creditAsset" isRequired value={asset} onChange={setAsset} />
      <Field label="Amount" name="creditAmount" isRequired inputMode="decimal" value={amount} onChange={setAmount} validate={(v) => (v === '' || isDecimal(v) ? null : 'An amount')} />
      <Field label="Deposit reference (the bank's or the chain's)" name="creditReference" isRequired value={reference} onChange={setReference} />
      <Field label="Name on the wall (optional)" name="creditName" value={name} onChange={setName} description="Empty: anonymous." />
    </ProposalForm>
  );
}

function Campaigns({ campaigns, onDone }: { campaigns: Data['active']; onDone: () => void }) {
  if (!campaigns.length) return <p>No campaign is taking gifts or waiting for its payout.</p>;
  return (
    <table className="data" aria-label="Campaigns taking gifts or ended">
      <TableHead columns={['Campaign', 'Organiser', 'State', 'Raised', ['Gifts', 'number'], 'Deadline']} actions />
      <tbody>
        {campaigns.map((c) => (
          <tr key={c.id} data-campaign-id={c.id}>
            <th scope="row">
              <Link href={`/campaigns/${c.id}`}>{c.title}</Link> <span className="muted">(campaign {c.id})</span>
            </th>
            <td>{c.organiser.name}</td>
            <td>{statusOf(c)}</td>
            <td className="progress-cell">
              <Progress raised={c.raised} goal={c.goal} progress={c.progress} asset={c.referenceAsset} label={`${c.title}: raised towards its goal`} />
            </td>
            <td className="number">{c.donations}</td>
            <td>
              <When at={c.deadline} />
            </td>
            <td>
              <Confirm
                label={`Stop ${c.title}`}
                danger
                question={`Stop "${c.title}" (fraud, a complaint)? Every gift not paid out goes back to its donor.`}
                confirm={() => (
                  <ActionButton action={() => request(StopCampaignMutation, { id: c.id })} onDone={onDone} className="danger">
                    Propose to stop it
                  </ActionButton>
                )}
              >
                Stop…
              </Confirm>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
