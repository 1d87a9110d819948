// The organiser's dashboard: their profile as the operators verified it,
// a draft campaign made and then published (or cancelled, every gift going
// back), and per campaign what it raised of its goal, its gifts (the donor
// named only when they agreed) and its payouts.
import { useState } from 'react';
import { Button, Checkbox, CheckboxGroup, Form, Input, Label, Radio, RadioGroup, Text, TextArea, TextField } from 'react-aria-components';
import { Link } from 'wouter';
import { request } from '../api';
import { ActionButton, Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, useQuery, useSubmit } from '../components';
import { formatDecimal, isDecimal } from '../decimal';
import { Confirm, MODEL_WORDS, Progress, localDateTime, statusOf } from '../donations';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';
import { OrganiserWebhooks } from './OrganiserWebhooks';

// What the dashboard shows of each of the organiser's campaigns, whatever its state.
const OwnCampaignFragment = graphql(`
  fragment OwnCampaign on Campaign @_unmask {
    id title referenceAsset goal raised progress deadline status cancelled donations model payoutEverySeconds feeBps acceptedAssets
    assets { asset given tips matched refunded released paidOut fees held }
  }
`);

const OrganiseQuery = graphql(`
  query Organise($me: ID!) {
    myOrganiser { user name kind country registration }
    donationFeeBps
    assets { symbol scale }
    drafts: campaigns(status: DRAFT, organiserId: $me, limit: 100) { ...OwnCampaign }
    active: campaigns(status: ACTIVE, organiserId: $me, limit: 100) { ...OwnCampaign }
    ended: campaigns(status: ENDED, organiserId: $me, limit: 100) { ...OwnCampaign }
    paidOut: campaigns(status: PAID_OUT, organiserId: $me, limit: 100) { ...OwnCampaign }
    refunded: campaigns(status: REFUNDED, organiserId: $me, limit: 100) { ...OwnCampaign }
  }
`, [OwnCampaignFragment]);

const CreateCampaignMutation = graphql(`
  mutation CreateCampaign(
    $title: String!, $story: String!, $referenceAsset: String!, $goal: Decimal!, $deadline: DateTime!, $acceptedAssets: [String!]!,
    $model: FundingModel!, $payoutEverySeconds: Int
  ) {
    createCampaign(
      title: $title, story: $story, referenceAsset: $referenceAsset, goal: $goal, deadline: $deadline, acceptedAssets: $acceptedAssets,
      model: $model, payoutEverySeconds: $payoutEverySeconds
    ) { id title status }
  }
`);

const PublishMutation = graphql(`
  mutation PublishCampaign($id: ID!) {
    publishCampaign(id: $id) { id status }
  }
`);

const CancelMutation = graphql(`
  mutation CancelCampaign($id: ID!) {
    cancelCampaign(id: $id) { id status cancelled }
  }
`);

const CampaignGiftsQuery = graphql(`
  query CampaignGifts($campaignId: ID!) {
    campaignDonations(campaignId: $campaignId, limit: 200) {
      id donorEmail receiptNumber asset gross receivedAsset received conversionId fee net tip value referenceAsset publicName amountShown knownToOrganiser message status at depositReference
      matches { asset amount }
    }
    campaignPayouts(campaignId: $campaignId, limit: 50) { id donations last at lines { asset net fees tips } }
  }
`);

type Data = ResultOf<typeof OrganiseQuery>;
type Row = Data['active'][number];

export function Organise() {
  const { me } = useSession();
  const { data, error, reload } = useQuery(OrganiseQuery, { me: me?.id ?? '' }, { refreshMs: 5_000 });
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="your campaigns" />}</main>;
  const organiser = data.myOrganiser;
  if (!organiser) {
    return (
      <main>
        <h1>Organise</h1>
        <p>Only verified organisers raise money here: the operators verify a charity's registration (or a person's identity) before it opens campaigns.</p>
      </main>
    );
  }
  const campaigns = [...data.drafts, ...data.active, ...data.ended, ...data.paidOut, ...data.refunded];
  return (
    <main>
      <h1>Organise</h1>
      <ErrorMessage error={error} />
      <Panel title="Your organiser profile" id="organiser-profile">
        <dl className="facts" data-testid="organiser-profile">
          <dt>Name</dt>
          <dd>{organiser.name}</dd>
          <dt>Kind</dt>
          <dd>{organiser.kind === 'ORGANISATION' ? 'organisation (charity, association or foundation)' : 'person'}</dd>
          <dt>Registration</dt>
          <dd>{organiser.registration || 'none'}</dd>
          <dt>Country (ISO 3166-1)</dt>
          <dd>{organiser.country}</dd>
        </dl>
        <p className="muted">Verified by the operators: receipts name you so. Ask them to change it.</p>
      </Panel>
      <Panel title="Your campaigns" id="my-campaigns">
        <CampaignTable campaigns={campaigns} onDone={reload} />
      </Panel>
      <Panel title="Webhooks" id="webhooks">
        <OrganiserWebhooks />
      </Panel>
      <Panel title="Start a campaign" id="create-campaign">
        <CreateCampaign assets={data.assets} feeBps={data.donationFeeBps} onDone={reload} />
      </Panel>
    </main>
  );
}

function CampaignTable({ campaigns, onDone }: { campaigns: Row[]; onDone: () => void }) {
  const [open, setOpen] = useState<string | null>(null);
  if (!campaigns.length) return <p>No campaigns yet: start one below, as a draft, and publish it when it reads right.</p>;
  const shown = campaigns.find((c) => c.id === open);
  return (
    <>
      <table className="data" aria-label="Your campaigns">
        <TableHead columns={['Campaign', 'State', 'Raised', ['Gifts', 'number'], 'Deadline', 'Model']} actions />
        <tbody>
          {campaigns.map((c) => (
            <tr key={c.id} data-campaign-id={c.id}>
              <th scope="row">{c.status === 'DRAFT' ? c.title : <Link href={`/campaigns/${c.id}`}>{c.title}</Link>}</th>
              <td data-testid="campaign-state">{statusOf(c)}</td>
              <td className="progress-cell">
                <Progress raised={c.raised} goal={c.goal} progress={c.progress} asset={c.referenceAsset} label={`${c.title}: raised towards its goal`} />
              </td>
              <td className="number">{c.donations}</td>
              <td>
                <When at={c.deadline} />
              </td>
              <td>{c.model === 'ALL_OR_NOTHING' ? 'all or nothing' : 'keep what you raise'}</td>
              <td>
                <div className="row-actions">
                  {c.status === 'DRAFT' ? (
                    <Confirm
                      label={`Publish ${c.title}`}
                      question={`Publish "${c.title}"? It takes gifts from now until its deadline and can no longer be changed.`}
                      confirm={() => (
                        <ActionButton action={() => request(PublishMutation, { id: c.id })} onDone={onDone} className="primary">
                          Yes, publish it
                        </ActionButton>
                      )}
                    >
                      Publish…
                    </Confirm>
                  ) : null}
                  {c.status === 'DRAFT' || c.status === 'ACTIVE' ? (
                    <Confirm
                      label={`Cancel ${c.title}`}
                      danger
                      question={`Cancel "${c.title}"? ${c.donations ? `Its ${c.donations} gift(s) go back to their donors. ` : ''}This cannot be undone.`}
                      confirm={() => (
                        <ActionButton action={() => request(CancelMutation, { id: c.id })} onDone={onDone} className="danger">
                          Yes, cancel it
                        </ActionButton>
                      )}
                    >
                      Cancel…
                    </Confirm>
                  ) : null}
                  {c.status !== 'DRAFT' ? (
                    <Button onPress={() => setOpen(open === c.id ? null : c.id)} aria-label={`Gifts and payouts of ${c.title}`} aria-expanded={open === c.id}>
                      {open === c.id ? 'Hide' : 'Gifts and payouts'}
                    </Button>
                  ) : null}
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown ? <CampaignDetail campaign={shown} /> : null}
    </>
  );
}

function CampaignDetail({ campaign }: { campaign: Row }) {
  const { data, error } = useQuery(CampaignGiftsQuery, { campaignId: campaign.id }, { refreshMs: 5_000 });
  return (
    <section aria-label={`Gifts and payouts of ${campaign.title}`} className="detail">
      <h3>{campaign.title}: money by asset</h3>
      <table className="data" aria-label={`Money of ${campaign.title}`}>
        <TableHead columns={['Asset', ['Given', 'number'], ['Tips', 'number'], ['Matched', 'number'], ['Refunded', 'number'], ['Paid to you', 'number'], ['Fees and tips', 'number'], ['Held', 'number']]} />
        <tbody>
          {campaign.assets.map((a) => (
            <tr key={a.asset}>
              <th scope="row">{a.asset}</th>
              <td className="number">{formatDecimal(a.given)}</td>
              <td className="number">{formatDecimal(a.tips)}</td>
              <td className="number">{formatDecimal(a.matched)}</td>
              <td className="number">{formatDecimal(a.refunded)}</td>
              <td className="number">{formatDecimal(a.paidOut)}</td>
              <td className="number">{formatDecimal(a.fees)}</td>
              <td className="number">{formatDecimal(a.held)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="its gifts" />
      ) : (
        <>
          <h3>Gifts</h3>
          {data.campaignDonations.length ? (
            <table className="data" aria-label={`Gifts to ${campaign.title}`}>
              <TableHead columns={['Date', 'Donor', 'On the wall', ['Gift', 'number'], ['Fee', 'number'], ['To you', 'number'], ['Matched', 'number'], 'Receipt number', 'Message', 'Status']} />
              <tbody>
                {data.campaignDonations.map((d) => (
                  <tr key={d.id} data-donation-id={d.id}>
                    <td>
                      <When at={d.at} />
                    </td>
                    <td data-testid="gift-donor">{d.donorEmail ?? 'not shared with you'}</td>
                    <td>
                      {d.publicName ?? 'Anonymous'}
                      {d.amountShown ? '' : ', amount hidden'}
                    </td>
                    <td className="number">
                      {formatDecimal(d.gross)} {d.asset}
                      {d.conversionId ? (
                        <span className="muted" data-testid="gift-converted">
                          {' '}
                          converted into {formatDecimal(d.received)} {d.receivedAsset}
                        </span>
                      ) : null}
                    </td>
                    <td className="number">
                      {formatDecimal(d.fee)} {d.receivedAsset}
                    </td>
                    <td className="number" data-testid="gift-net">
                      {formatDecimal(d.net)} {d.receivedAsset}
                    </td>
                    <td className="number">{d.matches.length ? d.matches.map((m) => `${formatDecimal(m.amount)} ${m.asset}`).join(', ') : '—'}</td>
                    <td>{d.receiptNumber}</td>
                    <td className="wrap">{d.message || '—'}</td>
                    <td>{d.status === 'HELD' ? 'held' : d.status === 'PAID_OUT' ? 'paid out' : 'refunded'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p>No gifts yet.</p>
          )}
          <h3>Payouts</h3>
          {data.campaignPayouts.length ? (
            <table className="data" aria-label={`Payouts of ${campaign.title}`}>
              <TableHead columns={['Date', ['Gifts', 'number'], ['Paid to you', 'number'], ['Platform fees', 'number'], ['Tips to the platform', 'number'], 'Kind']} />
              <tbody>
                {data.campaignPayouts.map((p) => (
                  <tr key={p.id}>
                    <td>
                      <When at={p.at} />
                    </td>
                    <td className="number">{p.donations}</td>
                    <td className="number" data-testid="payout-net">
                      {p.lines.map((l) => `${formatDecimal(l.net)} ${l.asset}`).join(', ') || '—'}
                    </td>
                    <td className="number">{p.lines.map((l) => `${formatDecimal(l.fees)} ${l.asset}`).join(', ') || '—'}</td>
                    <td className="number">{p.lines.map((l) => `${formatDecimal(l.tips)} ${l.asset}`).join(', ') || '—'}</td>
                    <td>{p.last ? 'final' : 'interim'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p>No payouts yet: the operators pay a campaign out after its deadline{campaign.payoutEverySeconds ? ', or on its interim schedule' : ''}.</p>
          )}
        </>
      )}
    </section>
  );
}

function CreateCampaign({ assets, feeBps, onDone }: { assets: Data['assets']; feeBps: number; onDone: () => void }) {
  const symbols = assets.map((a) => a.symbol);
  const [title, setTitle] = useState('');
  const [story, setStory] = useState('');
  const [reference, setReference] = useState(symbols.includes('USD') ? 'USD' : (symbols[0] ?? ''));
  const [goal, setGoal] = useState('');
  const [deadline, setDeadline] = useState(() => localDateTime(30 * 86_400).slice(0, 16));
  const [others, setOthers] = useState<string[]>([]);
  const [model, setModel] = useState<'KEEP_WHAT_YOU_RAISE' | 'ALL_OR_NOTHING'>('KEEP_WHAT_YOU_RAISE');
  const [interimDays, setInterimDays] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const scale = assets.find((a) => a.symbol === reference)?.scale;
  const run = submit(async () => {
    setSaid(null);
    const at = new Date(deadline);
    if (Number.isNaN(at.getTime())) throw new Error('The deadline is a date and time.');
    const accepted = [...new Set([reference, ...others])];
    const days = interimDays.trim();
    const created = (
      await request(CreateCampaignMutation, {
        title: title.trim(),
        story: story.replace(/\r\n/g, '\n').trim(),
        referenceAsset: reference,
        goal: goal.trim(),
        deadline: at.toISOString(),
        acceptedAssets: accepted,
        model,
        payoutEverySeconds: model === 'KEEP_WHAT_YOU_RAISE' && days ? Number(days) * 86_400 : null,
      })
    ).createCampaign;
    setSaid(`Campaign "${created.title}" saved as a draft: publish it from your campaigns above when it reads right.`);
    setTitle('');
    setStory('');
    setGoal('');
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label="Start a campaign">
      <p className="muted">The platform's fee on each gift to campaigns started now: {feeBps} basis points, out of the gift.</p>
      <Field label="Title" name="title" isRequired value={title} onChange={setTitle} validate={(v) => (new TextEncoder().encode(v).length > 120 ? 'At most 120 bytes' : null)} />
      <TextField value={story} onChange={setStory} name="story">
        <Label>Story</Label>
        <TextArea rows={6} />
        <Text slot="description">What the money is for, who it helps, how it will be spent.</Text>
      </TextField>
      <div className="columns">
        <Choice label="Goal asset" options={symbols.map((s): [string, string] => [s, s])} value={reference} onChange={setReference} />
        <Field
          label={`Goal (${reference})`}
          name="goal"
          isRequired
          inputMode="decimal"
          value={goal}
          onChange={setGoal}
          validate={(v) => (v === '' || isDecimal(v, scale) ? null : `An amount with at most ${scale ?? 0} decimals`)}
        />
        <TextField value={deadline} onChange={setDeadline} type="datetime-local" isRequired name="deadline">
          <Label>Deadline (your local time)</Label>
          <Input step={1} />
        </TextField>
      </div>
      <CheckboxGroup value={others.filter((s) => s !== reference)} onChange={setOthers}>
        <Label>Also accept (valued in {reference} at the last trade price)</Label>
        {symbols
          .filter((s) => s !== reference)
          .map((s) => (
            <Checkbox key={s} value={s}>
              <span className="box" aria-hidden="true" />
              {s}
            </Checkbox>
          ))}
      </CheckboxGroup>
      <RadioGroup value={model} onChange={(value) => setModel(value as typeof model)}>
        <Label>Model</Label>
        <Radio value="KEEP_WHAT_YOU_RAISE">{MODEL_WORDS.KEEP_WHAT_YOU_RAISE}</Radio>
        <Radio value="ALL_OR_NOTHING">{MODEL_WORDS.ALL_OR_NOTHING}</Radio>
      </RadioGroup>
      {model === 'KEEP_WHAT_YOU_RAISE' ? (
        <Field
          label="Interim payouts every (days, optional)"
          name="interimDays"
          inputMode="numeric"
          value={interimDays}
          onChange={setInterimDays}
          description="Empty: paid out once, after the deadline."
          validate={(v) => (v === '' || /^[1-9][0-9]{0,3}$/.test(v) ? null : 'A whole number of days')}
        />
      ) : null}
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" className="primary" isDisabled={busy || !reference}>
        {busy ? 'Saving…' : 'Save as a draft'}
      </Button>
    </Form>
  );
}
