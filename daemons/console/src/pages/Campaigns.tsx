// Campaigns as donors see them: the list of those taking gifts, and a
// campaign's page with its story, progress, donor wall and sponsors'
// matching pools; a donor sees what a gift costs (the platform's fee out
// of it, what the organiser gets, the tip they chose on top) before giving,
// gets a numbered receipt as a PDF after, and can give from outside with a
// payment reference. A gift in another asset than the campaign's may be
// converted at receipt into the campaign's, at a firm price the donor asks
// for and sees count down. Sponsors fund matching pools from the same page.
import { useEffect, useRef, useState } from 'react';
import { Button, Checkbox, Form, Input, Label, Radio, RadioGroup, Text, TextField } from 'react-aria-components';
import { Link } from 'wouter';
import { ApiError, request } from '../api';
import { Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit } from '../components';
import { formatDecimal, formatPercent, isDecimal } from '../decimal';
import { MODEL_WORDS, Progress, localDateTime, receiptHref, statusOf } from '../donations';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';

const CampaignsQuery = graphql(`
  query Campaigns($status: CampaignStatus) {
    campaigns(status: $status, limit: 200) {
      id title referenceAsset goal raised progress deadline status cancelled donations model
      organiser { name }
    }
  }
`);

const CampaignQuery = graphql(`
  query Campaign($id: ID!) {
    campaign(id: $id) {
      id title story referenceAsset goal raised progress deadline acceptedAssets model payoutEverySeconds status cancelled feeBps donations
      createdAt publishedAt endedAt closedAt
      organiser { user name kind country registration }
    }
    campaignWall(campaignId: $id, limit: 100) { id name asset amount matched message at }
    matchingPools(campaignId: $id) { id asset ratio perGiftMax perDonorMax total reserved left startsAt endsAt closedAt }
    assets { symbol scale }
  }
`);

const BalancesQuery = graphql(`
  query DonorBalances {
    balances { asset available }
  }
`);

const TermsQuery = graphql(`
  query DonationTerms($campaignId: ID!, $asset: String!, $amount: Decimal!, $tip: Decimal) {
    donationTerms(campaignId: $campaignId, asset: $asset, amount: $amount, tip: $tip) { asset gross fee net tip total feeBps }
  }
`);

const DonateMutation = graphql(`
  mutation Donate(
    $campaignId: ID!, $asset: String!, $amount: Decimal!, $tip: Decimal, $message: String, $displayName: String,
    $hideAmount: Boolean!, $knownToOrganiser: Boolean!, $idempotencyKey: String!, $convertQuoteId: ID
  ) {
    donate(
      campaignId: $campaignId, asset: $asset, amount: $amount, tip: $tip, message: $message, displayName: $displayName,
      hideAmount: $hideAmount, knownToOrganiser: $knownToOrganiser, idempotencyKey: $idempotencyKey, convertQuoteId: $convertQuoteId
    ) { id receiptNumber asset gross receivedAsset received fee net tip conversionId value referenceAsset matches { asset amount } }
  }
`);

const GiftQuoteMutation = graphql(`
  mutation GiftConvertQuote($from: String!, $to: String!, $fromAmount: Decimal!) {
    convertQuote(from: $from, to: $to, fromAmount: $fromAmount) { id from to fromAmount toAmount fee createdAt expiresAt }
  }
`);

const DepositReferenceQuery = graphql(`
  query DonationDepositReference($campaignId: ID!) {
    myDonationDepositReference(campaignId: $campaignId)
  }
`);

const FundPoolMutation = graphql(`
  mutation FundMatchingPool(
    $campaignId: ID!, $asset: String!, $ratio: Decimal!, $perGiftMax: Decimal!, $perDonorMax: Decimal!, $total: Decimal!, $endsAt: DateTime!, $idempotencyKey: String!
  ) {
    fundMatchingPool(
      campaignId: $campaignId, asset: $asset, ratio: $ratio, perGiftMax: $perGiftMax, perDonorMax: $perDonorMax, total: $total, endsAt: $endsAt, idempotencyKey: $idempotencyKey
    ) { id asset total }
  }
`);

type CampaignData = ResultOf<typeof CampaignQuery>;
type Campaign = NonNullable<CampaignData['campaign']>;
type Status = 'ACTIVE' | 'ENDED' | 'PAID_OUT' | 'REFUNDED';

/// The campaigns taking gifts (or, on asking, those ended, paid out or refunded).
export function Campaigns() {
  const [status, setStatus] = useState<Status>('ACTIVE');
  const { data, error } = useQuery(CampaignsQuery, { status }, { refreshMs: 10_000 });
  return (
    <main>
      <h1>Campaigns</h1>
      <div className="toolbar">
        <Choice
          label="Show"
          options={[
            ['ACTIVE', 'taking gifts'],
            ['ENDED', 'ended'],
            ['PAID_OUT', 'paid out'],
            ['REFUNDED', 'refunded or cancelled'],
          ]}
          value={status}
          onChange={setStatus}
        />
      </div>
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="campaigns" />
      ) : data.campaigns.length ? (
        <Panel title="Campaigns" id="campaign-list">
          <table className="data" aria-label="Campaigns">
            <TableHead columns={['Campaign', 'Organiser', 'Progress', ['Gifts', 'number'], 'Deadline', 'State']} />
            <tbody>
              {data.campaigns.map((c) => (
                <tr key={c.id} data-campaign-id={c.id}>
                  <th scope="row">
                    <Link href={`/campaigns/${c.id}`}>{c.title}</Link>
                  </th>
                  <td>{c.organiser.name}</td>
                  <td className="progress-cell">
                    <Progress raised={c.raised} goal={c.goal} progress={c.progress} asset={c.referenceAsset} label={`${c.title}: raised towards its goal`} />
                  </td>
                  <td className="number">{c.donations}</td>
                  <td>
                    <When at={c.deadline} />
                  </td>
                  <td>{statusOf(c)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Panel>
      ) : (
        <p role="status">{status === 'ACTIVE' ? 'No campaign is taking gifts now.' : 'None.'}</p>
      )}
    </main>
  );
}

/// One campaign's page.
export function CampaignPage({ id }: { id: string }) {
  const { me } = useSession();
  // Asked again every few seconds: gifts arrive, and the ledger's clock ends the campaign at its deadline.
  const { data, error, reload } = useQuery(CampaignQuery, { id }, { refreshMs: 5_000 });
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="the campaign" />}</main>;
  const campaign = data.campaign;
  if (!campaign) {
    return (
      <main>
        <h1>No such campaign</h1>
        <p>
          <Link href="/campaigns">See the campaigns taking gifts</Link>
        </p>
      </main>
    );
  }
  const mine = me?.id === campaign.organiser.user;
  const open = campaign.status === 'ACTIVE' && Date.now() < Date.parse(campaign.deadline);
  return (
    <main>
      <p>
        <Link href="/campaigns">All campaigns</Link>
      </p>
      <h1>{campaign.title}</h1>
      <ErrorMessage error={error} />
      <Progress raised={campaign.raised} goal={campaign.goal} progress={campaign.progress} asset={campaign.referenceAsset} label="Raised towards the goal" />
      <div className="columns">
        <Panel title="About" id="about">
          <dl className="facts" data-testid="campaign-facts">
            <dt>Organiser</dt>
            <dd data-testid="organiser">
              {campaign.organiser.name} ({campaign.organiser.kind === 'ORGANISATION' ? 'organisation' : 'person'}, verified by the operators)
            </dd>
            <dt>Registration</dt>
            <dd>
              {campaign.organiser.registration || 'none (a person)'}, country {campaign.organiser.country}
            </dd>
            <dt>Model</dt>
            <dd data-testid="model">{MODEL_WORDS[campaign.model]}</dd>
            {campaign.payoutEverySeconds ? (
              <>
                <dt>Interim payouts</dt>
                <dd>every {intervalWords(campaign.payoutEverySeconds)}</dd>
              </>
            ) : null}
            <dt>Deadline</dt>
            <dd>
              <When at={campaign.deadline} />
            </dd>
            <dt>State</dt>
            <dd data-testid="campaign-state">{statusOf(campaign)}</dd>
            <dt>Gifts</dt>
            <dd data-testid="campaign-gifts">{campaign.donations}</dd>
            <dt>Accepts</dt>
            <dd>{campaign.acceptedAssets.join(', ')}</dd>
            <dt>Platform fee</dt>
            <dd>{formatPercent(bpsToRate(campaign.feeBps), 2)} of each gift</dd>
          </dl>
        </Panel>
        <Panel title="Story" id="story">
          <p className="story">{campaign.story || 'The organiser wrote no story.'}</p>
        </Panel>
      </div>
      <Panel title="Give" id="give">
        {!open ? (
          <p>This campaign is not taking gifts: {statusOf(campaign)}.</p>
        ) : !me ? (
          <p>
            <Link href="/signin">Sign in</Link> to give to this campaign.
          </p>
        ) : mine ? (
          <p>This is your campaign: an organiser does not give to their own campaign.</p>
        ) : (
          <GiveForm campaign={campaign} assets={data.assets} onDone={reload} />
        )}
      </Panel>
      {open && me && !mine ? (
        <Panel title="Give from outside" id="give-from-outside">
          <DepositReference campaignId={campaign.id} />
        </Panel>
      ) : null}
      <Panel title="Donor wall" id="donor-wall">
        <Wall entries={data.campaignWall} />
      </Panel>
      <Panel title="Matching pools" id="matching-pools">
        <Pools pools={data.matchingPools} />
        {open && me && !mine ? <FundPool campaign={campaign} assets={data.assets} onDone={reload} /> : null}
      </Panel>
    </main>
  );
}

/// 86400 seconds as "1 day", 172800 as "2 days", other spans in hours.
function intervalWords(seconds: number): string {
  if (seconds % 86_400 === 0) return seconds === 86_400 ? 'day' : `${seconds / 86_400} days`;
  return `${Math.round(seconds / 3_600)} hours`;
}

/// 250 basis points as the rate "0.0250", by text.
export function bpsToRate(bps: number): string {
  const digits = String(bps).padStart(5, '0');
  return `${digits.slice(0, -4)}.${digits.slice(-4)}`.replace(/^0+(?=\d)/, '');
}

function Wall({ entries }: { entries: CampaignData['campaignWall'] }) {
  if (!entries.length) return <p>No gifts yet: be the first.</p>;
  return (
    <ul className="wall" aria-label="Gifts on the wall">
      {entries.map((e) => (
        <li key={e.id} data-testid="wall-entry">
          <span className="who" data-testid="wall-name">
            {e.name ?? 'Anonymous'}
          </span>{' '}
          <span className="amount" data-testid="wall-amount">
            {e.amount != null ? `gave ${formatDecimal(e.amount)} ${e.asset ?? ''}` : 'gave (amount not shown)'}
          </span>
          {e.matched ? <span className="tag">matched by a sponsor</span> : null} <When at={e.at} />
          {e.message ? <blockquote className="message">{e.message}</blockquote> : null}
        </li>
      ))}
    </ul>
  );
}

function Pools({ pools }: { pools: CampaignData['matchingPools'] }) {
  const now = Date.now();
  const active = pools.filter((p) => !p.closedAt && Date.parse(p.endsAt) > now);
  if (!active.length) return <p>No sponsor is matching gifts now.</p>;
  return (
    <table className="data" aria-label="Active matching pools">
      <TableHead columns={['Match', ['Per gift at most', 'number'], ['Per donor at most', 'number'], ['Left', 'number'], 'From', 'Until']} />
      <tbody>
        {active.map((p) => (
          <tr key={p.id}>
            <td>
              {p.ratio} {p.asset} for each 1 given
            </td>
            <td className="number">
              {formatDecimal(p.perGiftMax)} {p.asset}
            </td>
            <td className="number">
              {formatDecimal(p.perDonorMax)} {p.asset}
            </td>
            <td className="number" data-testid={`pool-left-${p.id}`}>
              {formatDecimal(p.left)} of {formatDecimal(p.total)} {p.asset}
            </td>
            <td>
              <When at={p.startsAt} />
            </td>
            <td>
              <When at={p.endsAt} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type Terms = ResultOf<typeof TermsQuery>['donationTerms'];
type Gift = ResultOf<typeof DonateMutation>['donate'];
type Quote = ResultOf<typeof GiftQuoteMutation>['convertQuote'];

/// Milliseconds a quote has left by this browser's clock: its life (the
/// ledger's expiry less its creation) counted from when it arrived, as the
/// Convert page counts, so a browser whose clock is off still counts right.
function useRemainingMs(quote: Quote | null, arrived: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!quote) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, [quote]);
  if (!quote) return 0;
  const lifeMs = Date.parse(quote.expiresAt) - Date.parse(quote.createdAt);
  return Math.max(0, lifeMs - Math.max(0, now - arrived));
}

/// A tip is optional: empty, or an amount (zero included) at the asset's scale.
function tipProblem(tip: string, scale: number | undefined): string | null {
  const text = tip.trim();
  if (text === '') return null;
  if (!/^\d+(\.\d+)?$/.test(text)) return 'A tip is an amount such as 2.50, or nothing';
  if (scale !== undefined && (text.split('.')[1]?.length ?? 0) > scale) return `At most ${scale} decimals`;
  return null;
}

function GiveForm({ campaign, assets, onDone }: { campaign: Campaign; assets: CampaignData['assets']; onDone: () => void }) {
  const [asset, setAsset] = useState(campaign.referenceAsset);
  const [amount, setAmount] = useState('');
  // Empty: a tip is the donor's own idea, never filled in for them.
  const [tip, setTip] = useState('');
  const [message, setMessage] = useState('');
  const [shownAs, setShownAs] = useState<'name' | 'anonymous'>('anonymous');
  const [name, setName] = useState('');
  const [hideAmount, setHideAmount] = useState(false);
  const [known, setKnown] = useState(false);
  const [terms, setTerms] = useState<Terms | null>(null);
  const [termsError, setTermsError] = useState<unknown>(null);
  const [gift, setGift] = useState<Gift | null>(null);
  // Converting at receipt is the donor's choice, never made for them; its
  // price is asked for on a press, never per keystroke: quotes are
  // rate-limited and hold the house's inventory while they last.
  const [convert, setConvert] = useState(false);
  const [quote, setQuote] = useState<Quote | null>(null);
  const [quoteArrived, setQuoteArrived] = useState(0);
  const [asking, setAsking] = useState(false);
  const [quoteError, setQuoteError] = useState<unknown>(null);
  const [received, setReceived] = useState<Terms | null>(null);
  const [receivedError, setReceivedError] = useState<unknown>(null);
  const balances = useQuery(BalancesQuery);
  const { busy, error, submit } = useSubmit();
  // One key per gift meant: a retry of the same form after a lost answer gives once; a changed form is another gift.
  const key = useRef(newIdempotencyKey());
  const scale = assets.find((a) => a.symbol === asset)?.scale;
  const amountOk = isDecimal(amount, scale);
  const tipOk = tipProblem(tip, scale) === null;
  const available = balances.data?.balances.find((b) => b.asset === asset)?.available ?? '0';
  const reference = campaign.referenceAsset;
  const converting = convert && asset !== reference;
  const remainingMs = useRemainingMs(quote, quoteArrived);
  const expired = quote !== null && remainingMs === 0;
  const seconds = Math.ceil(remainingMs / 1000);

  useEffect(() => {
    key.current = newIdempotencyKey();
  }, [asset, amount, tip, message, shownAs, name, hideAmount, known, converting]);

  // A quote is for this asset and amount: any change drops it (a new price is asked for on a press).
  useEffect(() => {
    setQuote(null);
    setQuoteError(null);
  }, [asset, amount, converting]);

  // What the campaign gets of the converted gift: the terms of what the quote gives, in the reference asset.
  useEffect(() => {
    setReceived(null);
    setReceivedError(null);
    if (!quote) return;
    let current = true;
    request(TermsQuery, { campaignId: campaign.id, asset: quote.to, amount: quote.toAmount, tip: null }).then(
      (answer) => current && setReceived(answer.donationTerms),
      (failure) => current && setReceivedError(failure),
    );
    return () => {
      current = false;
    };
  }, [campaign.id, quote]);

  async function askPrice() {
    setQuote(null);
    setQuoteError(null);
    setAsking(true);
    try {
      const answer = await request(GiftQuoteMutation, { from: asset, to: reference, fromAmount: amount.trim() });
      setQuoteArrived(Date.now());
      setQuote(answer.convertQuote);
    } catch (failure) {
      setQuoteError(failure);
    } finally {
      setAsking(false);
    }
  }

  // What it costs, asked again as the asset, amount or tip change (after a pause in the typing).
  useEffect(() => {
    setTerms(null);
    setTermsError(null);
    if (!amountOk || !tipOk) return;
    let current = true;
    const timer = setTimeout(() => {
      request(TermsQuery, { campaignId: campaign.id, asset, amount: amount.trim(), tip: tip.trim() || null }).then(
        (answer) => current && setTerms(answer.donationTerms),
        (failure) => current && setTermsError(failure),
      );
    }, 250);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [campaign.id, asset, amount, tip, amountOk, tipOk]);

  const run = submit(async () => {
    setGift(null);
    if (shownAs === 'name' && !name.trim()) throw new ApiError('Enter the name to show, or give anonymously.', 'BAD_USER_INPUT');
    if (converting && (!quote || expired)) throw new ApiError('Get a price for the conversion first.', 'BAD_USER_INPUT');
    const answer = await request(DonateMutation, {
      campaignId: campaign.id,
      asset,
      amount: amount.trim(),
      tip: tip.trim() || null,
      message: message.trim() || null,
      displayName: shownAs === 'name' ? name.trim() : null,
      hideAmount,
      knownToOrganiser: known,
      idempotencyKey: key.current,
      convertQuoteId: converting ? (quote?.id ?? null) : null,
    }).catch((failure: unknown) => {
      // The price lapsed on the way: drop it, so that the form offers a new one.
      if (failure instanceof ApiError && failure.code === 'QUOTE_EXPIRED') setQuote(null);
      throw failure;
    });
    setGift(answer.donate);
    setQuote(null);
    setAmount('');
    setTip('');
    setMessage('');
    balances.reload();
    onDone();
  });

  return (
    <Form onSubmit={run} aria-label="Give to this campaign">
      <div className="columns">
        {campaign.acceptedAssets.length > 1 ? (
          <Choice label="Asset" options={campaign.acceptedAssets.map((a): [string, string] => [a, a])} value={asset} onChange={setAsset} />
        ) : null}
        <Field
          label={`Amount (${asset})`}
          name="amount"
          isRequired
          inputMode="decimal"
          value={amount}
          onChange={setAmount}
          description={`You have ${formatDecimal(available)} ${asset} available.`}
          validate={(v) => (v === '' || isDecimal(v, scale) ? null : `An amount with at most ${scale ?? 0} decimals`)}
        />
        <Field
          label={`Tip to the platform (${asset}, optional)`}
          name="tip"
          inputMode="decimal"
          value={tip}
          onChange={setTip}
          description="On top of your gift, to keep the platform running; not part of the gift. Leave empty for none."
          validate={(v) => tipProblem(v, scale)}
        />
      </div>
      {asset !== reference ? (
        <>
          <Checkbox isSelected={convert} onChange={setConvert}>
            <span className="box" aria-hidden="true" />
            Convert to {reference} when received
          </Checkbox>
          {converting ? (
            <p className="muted">
              The campaign receives {reference}: your {asset} is converted when it arrives, at a firm price you ask for here, which holds for a few seconds. Your tip stays in {asset}.
            </p>
          ) : (
            <p className="muted">A gift in {asset} counts towards the goal at its value in {reference} at the last trade price when it arrives.</p>
          )}
        </>
      ) : null}
      <TextField value={message} onChange={setMessage} name="message">
        <Label>Message (optional)</Label>
        <Input maxLength={500} />
        <Text slot="description">Shown on the donor wall with your gift.</Text>
      </TextField>
      <RadioGroup value={shownAs} onChange={(value) => setShownAs(value as 'name' | 'anonymous')} orientation="horizontal">
        <Label>On the donor wall, show me as</Label>
        <Radio value="anonymous">Anonymous</Radio>
        <Radio value="name">A name I choose</Radio>
      </RadioGroup>
      {shownAs === 'name' ? <Field label="Name to show" name="displayName" isRequired value={name} onChange={setName} /> : null}
      <Checkbox isSelected={hideAmount} onChange={setHideAmount}>
        <span className="box" aria-hidden="true" />
        Hide the amount on the donor wall
      </Checkbox>
      <Checkbox isSelected={known} onChange={setKnown}>
        <span className="box" aria-hidden="true" />
        Let the organiser know who I am (my account's email)
      </Checkbox>
      {converting ? (
        <section aria-label="The conversion" className="quote" data-testid="gift-quote">
          {quote ? (
            <>
              <p data-testid="quote-line">
                You give {formatDecimal(quote.fromAmount)} {quote.from} → the campaign receives{' '}
                <strong>
                  {formatDecimal(quote.toAmount)} {quote.to}
                </strong>
              </p>
              {/* A timer, not a live region: announcing every second would drown a screen reader; the end is announced once. */}
              <p role="timer" data-testid="countdown" aria-live="off">
                {expired ? 'This price has expired.' : `This price holds for ${seconds} more second${seconds === 1 ? '' : 's'}.`}
              </p>
              {expired ? <p role="status">The price expired: get a new one to give.</p> : null}
            </>
          ) : (
            <p className="muted">Get a price to see what the campaign receives in {reference}.</p>
          )}
          <ErrorMessage error={quoteError} />
          {!quote || expired ? (
            <Button type="button" onPress={askPrice} isDisabled={asking || !amountOk}>
              {asking ? 'Asking…' : quote ? 'Get a new price' : 'Get a price'}
            </Button>
          ) : null}
        </section>
      ) : null}
      <section aria-label="What this gift costs" className="terms" aria-live="polite">
        {converting ? (
          terms && quote && received ? (
            <dl className="facts">
              <dt>Your gift</dt>
              <dd data-testid="terms-gross">
                {formatDecimal(terms.gross)} {terms.asset}
              </dd>
              <dt>The campaign receives, converted</dt>
              <dd data-testid="terms-received">
                {formatDecimal(received.gross)} {received.asset}
              </dd>
              <dt>Platform fee ({formatPercent(bpsToRate(received.feeBps), 2)}, out of what the campaign receives)</dt>
              <dd data-testid="terms-fee">
                {formatDecimal(received.fee)} {received.asset}
              </dd>
              <dt>The organiser gets</dt>
              <dd data-testid="terms-net">
                {formatDecimal(received.net)} {received.asset}
              </dd>
              <dt>Your tip</dt>
              <dd data-testid="terms-tip">
                {formatDecimal(terms.tip)} {terms.asset}
              </dd>
              <dt>Total charged to you</dt>
              <dd data-testid="terms-total">
                <strong>
                  {formatDecimal(terms.total)} {terms.asset}
                </strong>
              </dd>
            </dl>
          ) : termsError || receivedError ? (
            <ErrorMessage error={termsError ?? receivedError} />
          ) : (
            <p className="muted">Enter an amount and get a price to see the fee, what the organiser gets and what you are charged.</p>
          )
        ) : terms ? (
          <dl className="facts">
            <dt>Your gift</dt>
            <dd data-testid="terms-gross">
              {formatDecimal(terms.gross)} {terms.asset}
            </dd>
            <dt>Platform fee ({formatPercent(bpsToRate(terms.feeBps), 2)}, out of the gift)</dt>
            <dd data-testid="terms-fee">
              {formatDecimal(terms.fee)} {terms.asset}
            </dd>
            <dt>The organiser gets</dt>
            <dd data-testid="terms-net">
              {formatDecimal(terms.net)} {terms.asset}
            </dd>
            <dt>Your tip</dt>
            <dd data-testid="terms-tip">
              {formatDecimal(terms.tip)} {terms.asset}
            </dd>
            <dt>Total charged to you</dt>
            <dd data-testid="terms-total">
              <strong>
                {formatDecimal(terms.total)} {terms.asset}
              </strong>
            </dd>
          </dl>
        ) : termsError ? (
          <ErrorMessage error={termsError} />
        ) : (
          <p className="muted">Enter an amount to see the fee, what the organiser gets and what you are charged.</p>
        )}
      </section>
      <ErrorMessage error={error} />
      {gift ? (
        <div role="status" className="thanks" data-testid="gift-receipt">
          <p>
            Thank you: your gift of {formatDecimal(gift.gross)} {gift.asset} is received
            {gift.matches.length ? `, matched with ${gift.matches.map((m) => `${formatDecimal(m.amount)} ${m.asset}`).join(' and ')}` : ''}. Receipt number{' '}
            <strong data-testid="receipt-number">{gift.receiptNumber}</strong>.
          </p>
          {gift.conversionId ? (
            <p data-testid="gift-converted">
              Converted when received into {formatDecimal(gift.received)} {gift.receivedAsset} (conversion {gift.conversionId}): the organiser gets {formatDecimal(gift.net)} {gift.receivedAsset}{' '}
              after the platform's fee of {formatDecimal(gift.fee)} {gift.receivedAsset}.
            </p>
          ) : null}
          <p>
            <a href={receiptHref(gift.id)}>Your receipt (PDF)</a> · <Link href="/donations">All your gifts</Link>
          </p>
        </div>
      ) : null}
      <Button type="submit" className="primary" isDisabled={busy || !terms || (converting && (!quote || expired || !received))}>
        {busy ? 'Giving…' : terms ? `Give ${formatDecimal(terms.total)} ${terms.asset}` : 'Give'}
      </Button>
    </Form>
  );
}

function DepositReference({ campaignId }: { campaignId: string }) {
  const { data, error } = useQuery(DepositReferenceQuery, { campaignId });
  if (error) return <ErrorMessage error={error} />;
  if (!data) return <Loading what="your payment reference" />;
  return (
    <>
      <p>To give by bank transfer or from another wallet, write this reference on the payment: the operators credit it to this campaign as your gift, with its receipt.</p>
      <p className="secret">
        Payment reference: <code data-testid="deposit-reference">{data.myDonationDepositReference}</code>
      </p>
    </>
  );
}

function FundPool({ campaign, assets, onDone }: { campaign: Campaign; assets: CampaignData['assets']; onDone: () => void }) {
  const [asset, setAsset] = useState(campaign.referenceAsset);
  const [ratio, setRatio] = useState('1');
  const [perGift, setPerGift] = useState('');
  const [perDonor, setPerDonor] = useState('');
  const [total, setTotal] = useState('');
  const [ends, setEnds] = useState(() => localDateTime(Math.max(60, Math.floor((Date.parse(campaign.deadline) - Date.now()) / 1000))).slice(0, 16));
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const scale = assets.find((a) => a.symbol === asset)?.scale;
  const amount = (v: string) => (v === '' || isDecimal(v, scale) ? null : `An amount with at most ${scale ?? 0} decimals`);
  const run = submit(async () => {
    setSaid(null);
    const endsAt = new Date(ends).toISOString();
    const pool = (
      await request(FundPoolMutation, {
        campaignId: campaign.id,
        asset,
        ratio: ratio.trim(),
        perGiftMax: perGift.trim(),
        perDonorMax: perDonor.trim(),
        total: total.trim(),
        endsAt,
        idempotencyKey: newIdempotencyKey(),
      })
    ).fundMatchingPool;
    setSaid(`Your pool of ${formatDecimal(pool.total)} ${pool.asset} matches gifts from now on.`);
    onDone();
  });
  return (
    <details className="sponsor">
      <summary>Sponsor: match other donors' gifts</summary>
      <Form onSubmit={run} aria-label="Fund a matching pool">
        <p className="muted">The pool is paid in from your balance now; what it has not matched when it ends goes back to you.</p>
        <div className="columns">
          {campaign.acceptedAssets.length > 1 ? <Choice label="Pool asset" options={campaign.acceptedAssets.map((a): [string, string] => [a, a])} value={asset} onChange={setAsset} /> : null}
          <Field label="Match per unit given (1 is one for one)" name="ratio" isRequired inputMode="decimal" value={ratio} onChange={setRatio} validate={(v) => (v === '' || isDecimal(v, 4) ? null : 'Such as 1 or 0.5')} />
          <Field label={`Most per gift (${asset})`} name="perGiftMax" isRequired inputMode="decimal" value={perGift} onChange={setPerGift} validate={amount} />
          <Field label={`Most per donor (${asset})`} name="perDonorMax" isRequired inputMode="decimal" value={perDonor} onChange={setPerDonor} validate={amount} />
          <Field label={`Pool total (${asset})`} name="total" isRequired inputMode="decimal" value={total} onChange={setTotal} validate={amount} />
          <TextField value={ends} onChange={setEnds} type="datetime-local" isRequired name="endsAt">
            <Label>Matching ends (your local time)</Label>
            <Input />
          </TextField>
        </div>
        <ErrorMessage error={error} />
        {said ? <p role="status">{said}</p> : null}
        <Button type="submit" isDisabled={busy}>
          {busy ? 'Funding…' : 'Fund the pool'}
        </Button>
      </Form>
    </details>
  );
}
