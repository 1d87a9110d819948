// The operators' pages: the dashboard, the approval queue, users, assets
// and markets, the audit log. Every change an operator makes here is a
// proposal that other operators approve (four-eyes), as from marionettectl.
import { useState, type FormEvent, type ReactNode } from 'react';
import { Button, Checkbox, Form } from 'react-aria-components';
import { Link } from 'wouter';
import { request } from '../api';
import { ActionButton, ErrorMessage, Field, Loading, Panel, TableHead, When, useQuery, useSubmit, words } from '../components';
import { formatDecimal, formatPercent, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';
import { InvestorStanding } from './InvestorStanding';
import { intervalOf } from './Perpetuals';
import { WithdrawalTable } from './Withdrawals';

const DashboardQuery = graphql(`
  query OperatorDashboard {
    systemStatus {
      gateway { version signingKey }
      ledger { reachable journalApplied matchingApplied outboxPending matchingAlarm }
      matching { connectedToLedger reachableFromGateway }
    }
    reserves { asset deposited users fees pendingWithdrawals inventory balanced }
    proposals(status: PENDING, limit: 100) { id }
    withdrawals(status: PENDING) { id }
  }
`);

const ApprovalsQuery = graphql(`
  query Approvals {
    pending: proposals(status: PENDING, limit: 100) { id kind description status approvals required createdAt updatedAt rejectedBy rejectionReason }
    decided: proposals(limit: 30) { id kind description status approvals required createdAt updatedAt rejectedBy rejectionReason }
    withdrawals(status: PENDING) { id asset amount destination status createdAt reviewReason }
  }
`);

const ApproveProposalMutation = graphql(`
  mutation ApproveProposal($id: ID!) {
    approveProposal(id: $id) { id status }
  }
`);

const RejectProposalMutation = graphql(`
  mutation RejectProposal($id: ID!, $reason: String!) {
    rejectProposal(id: $id, reason: $reason) { id status }
  }
`);

const ApproveWithdrawalMutation = graphql(`
  mutation ApproveWithdrawal($id: ID!) {
    approveWithdrawal(id: $id) { id status }
  }
`);

const RejectWithdrawalMutation = graphql(`
  mutation RejectWithdrawal($id: ID!) {
    rejectWithdrawal(id: $id) { id status }
  }
`);

const UserStandingQuery = graphql(`
  query UserStanding($email: String!) {
    userStanding(email: $email) { user { id email role createdAt twoFactorEnabled } tier frozen killSwitch { engaged engagedByUser engagedByOperators } }
  }
`);

const FrozenQuery = graphql(`
  query FrozenAccounts {
    frozenAccounts { id email }
  }
`);

const SetTierMutation = graphql(`
  mutation SetUserTier($email: String!, $tier: Int!) {
    setUserTier(email: $email, tier: $tier) { id status approvals required }
  }
`);
const FreezeMutation = graphql(`
  mutation FreezeAccount($email: String!, $cancelOpenOrders: Boolean!) {
    freezeAccount(email: $email, cancelOpenOrders: $cancelOpenOrders) { id status approvals required }
  }
`);
const UnfreezeMutation = graphql(`
  mutation UnfreezeAccount($email: String!) {
    unfreezeAccount(email: $email) { id status approvals required }
  }
`);
const EngageKillSwitchForMutation = graphql(`
  mutation EngageKillSwitchFor($email: String!) {
    engageKillSwitchFor(email: $email) { id status approvals required }
  }
`);
const LiftKillSwitchForMutation = graphql(`
  mutation LiftKillSwitchFor($email: String!) {
    liftKillSwitchFor(email: $email) { id status approvals required }
  }
`);
const ProposeOperatorMutation = graphql(`
  mutation ProposeOperator($email: String!) {
    proposeOperator(email: $email) { id status approvals required }
  }
`);
const DepositMutation = graphql(`
  mutation Deposit($email: String!, $asset: String!, $amount: Decimal!, $reference: String!) {
    deposit(email: $email, asset: $asset, amount: $amount, reference: $reference) { id amount asset }
  }
`);

const MarketsAdminQuery = graphql(`
  query MarketsAdmin {
    assets { id symbol scale }
    markets { id trading tickSize lotSize makerFeeRate takerFeeRate priceBand lastPrice base { symbol } quote { symbol } }
    houseBalances { asset inventory revenue }
    perpetualMarkets {
      id tickSize lotSize markPrice indexPrice fundingIntervalMs insuranceFund openInterest base collateral liquidationPenaltyRate
      marginBrackets { maxNotional initialMarginRate maintenanceMarginRate maxLeverage }
    }
    convertPositions {
      pair { base quote priceSource market price spreadBps feeBps minAmount maxAmount stepSize quoteTtlMs paused }
      exposureLimitBase exposureLimitQuote netBase netQuote
    }
  }
`);
const SetConvertPairMutation = graphql(`
  mutation SetConvertPair($base: String!, $quote: String!, $market: ID, $price: Decimal, $spreadBps: Int, $feeBps: Int, $minAmount: Decimal, $maxAmount: Decimal, $stepSize: Decimal, $exposureLimitBase: Decimal, $exposureLimitQuote: Decimal, $paused: Boolean) {
    setConvertPair(base: $base, quote: $quote, market: $market, price: $price, spreadBps: $spreadBps, feeBps: $feeBps, minAmount: $minAmount, maxAmount: $maxAmount, stepSize: $stepSize, exposureLimitBase: $exposureLimitBase, exposureLimitQuote: $exposureLimitQuote, paused: $paused) { base quote paused }
  }
`);
const CreateAssetMutation = graphql(`
  mutation CreateAsset($symbol: String!, $scale: Int!) {
    createAsset(symbol: $symbol, scale: $scale) { id symbol }
  }
`);
const CreateMarketMutation = graphql(`
  mutation CreateMarket($input: CreateMarketInput!) {
    createMarket(input: $input) { id }
  }
`);
const CreatePerpetualMarketMutation = graphql(`
  mutation CreatePerpetualMarket($input: CreatePerpetualMarketInput!) {
    createPerpetualMarket(input: $input) { id maxLeverage fundingIntervalMs }
  }
`);
const SetOracleMutation = graphql(`
  mutation SetOracle($market: ID!, $email: String!, $source: Int) {
    setOracle(market: $market, email: $email, source: $source)
  }
`);
const HaltMutation = graphql(`
  mutation HaltMarket($market: ID!) {
    haltMarket(market: $market) { id trading }
  }
`);
const ResumeMutation = graphql(`
  mutation ResumeMarket($market: ID!) {
    resumeMarket(market: $market) { id trading }
  }
`);
const FundHouseMutation = graphql(`
  mutation FundHouse($asset: String!, $amount: Decimal!, $reference: String!) {
    fundHouse(asset: $asset, amount: $amount, reference: $reference) { asset inventory }
  }
`);
const DefundHouseMutation = graphql(`
  mutation DefundHouse($asset: String!, $amount: Decimal!, $reference: String!) {
    defundHouse(asset: $asset, amount: $amount, reference: $reference) { asset inventory }
  }
`);

const AuditLogQuery = graphql(`
  query AuditLog($before: String) {
    auditLog(before: $before, limit: 50) { headSequence headHash records { sequence at kind description actor proposal hash } }
  }
`);
const VerifyAuditQuery = graphql(`
  query VerifyAuditLog($after: String!, $afterHash: String) {
    verifyAuditLog(after: $after, afterHash: $afterHash, limit: 2000) { checkedThrough lastHash headSequence complete broken }
  }
`);

/// The operator section's own navigation, on each of its pages.
export function OperatorPage({ title, children }: { title: string; children: ReactNode }) {
  const { me } = useSession();
  if (me?.role !== 'OPERATOR') {
    return (
      <main>
        <h1>{title}</h1>
        <p>These pages are for operators.</p>
      </main>
    );
  }
  return (
    <main>
      <nav aria-label="Operators" className="subnav">
        <Link href="/operator">Dashboard</Link>
        <Link href="/operator/approvals">Approvals</Link>
        <Link href="/operator/users">Users</Link>
        <Link href="/operator/markets">Assets and markets</Link>
        <Link href="/operator/donations">Donations</Link>
        <Link href="/operator/audit">Audit log</Link>
      </nav>
      <h1>{title}</h1>
      {children}
    </main>
  );
}

function Yes({ ok, yes, no }: { ok: boolean; yes: string; no: string }) {
  return <span className={ok ? 'ok' : 'bad'}>{ok ? `✓ ${yes}` : `✗ ${no}`}</span>;
}

export function Dashboard() {
  const { data, error } = useQuery(DashboardQuery);
  return (
    <OperatorPage title="Dashboard">
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="the dashboard" />
      ) : (
        <>
          <div className="columns">
            <Panel title="Daemons" id="daemons">
              <DaemonStates status={data.systemStatus} />
            </Panel>
            <Panel title="Waiting for you" id="waiting">
              <p>
                <Link href="/operator/approvals">
                  <span data-testid="pending-proposals">{data.proposals.length}</span> proposal(s) and <span data-testid="pending-withdrawals">{data.withdrawals.length}</span>{' '}
                  withdrawal(s) pending
                </Link>
              </p>
            </Panel>
          </div>
          <Panel title="Reserves" id="reserves">
            <Reserves reserves={data.reserves} />
          </Panel>
        </>
      )}
    </OperatorPage>
  );
}

function DaemonStates({ status }: { status: ResultOf<typeof DashboardQuery>['systemStatus'] }) {
  return (
    <table className="data" aria-label="Daemons">
      <tbody>
        <tr>
          <th scope="row">gateway</th>
          <td>
            <Yes ok yes="serving" no="" /> version {status.gateway.version}, signing key {status.gateway.signingKey}
          </td>
        </tr>
        <tr>
          <th scope="row">ledger</th>
          <td data-testid="ledger-state">
            <Yes ok={status.ledger.reachable} yes="reachable" no="unreachable" />
            {status.ledger.reachable ? ` journal at ${status.ledger.journalApplied}, ${status.ledger.outboxPending} order command(s) on the way to matching` : ''}
          </td>
        </tr>
        <tr>
          <th scope="row">matching</th>
          <td data-testid="matching-state">
            <Yes ok={status.matching.connectedToLedger} yes="linked to the ledger" no="not linked to the ledger" />,{' '}
            <Yes ok={status.matching.reachableFromGateway} yes="answering the gateway" no="not answering the gateway" />
            {status.ledger.matchingApplied ? `, output applied to ${status.ledger.matchingApplied}` : ''}
          </td>
        </tr>
      </tbody>
      {status.ledger.matchingAlarm ? (
        <caption role="alert" className="error">
          The ledger stopped its link to matching: {status.ledger.matchingAlarm}
        </caption>
      ) : null}
    </table>
  );
}

function Reserves({ reserves }: { reserves: ResultOf<typeof DashboardQuery>['reserves'] }) {
  if (reserves.length === 0) return <p>No assets yet.</p>;
  return (
    <table className="data" aria-label="Reserves">
      <TableHead columns={['Asset', ['Deposited', 'number'], ['Users hold', 'number'], ['Fees', 'number'], ['House inventory', 'number'], ['Pending withdrawals', 'number'], 'Books']} />
      <tbody>
        {reserves.map((r) => (
          <tr key={r.asset} data-asset={r.asset}>
            <th scope="row">{r.asset}</th>
            <td className="number">{formatDecimal(r.deposited)}</td>
            <td className="number">{formatDecimal(r.users)}</td>
            <td className="number">{formatDecimal(r.fees)}</td>
            <td className="number">{formatDecimal(r.inventory)}</td>
            <td className="number">{formatDecimal(r.pendingWithdrawals)}</td>
            <td data-testid="balanced">
              <Yes ok={r.balanced} yes="balanced" no="do not balance" />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type Proposal = ResultOf<typeof ApprovalsQuery>['pending'][number];

export function Approvals() {
  const { me } = useSession();
  const { data, error, reload } = useQuery(ApprovalsQuery);
  return (
    <OperatorPage title="Approvals">
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="the approval queue" />
      ) : (
        <>
          <Panel title="Proposals waiting for approval" id="pending-proposals">
            {data.pending.length ? <ProposalTable proposals={data.pending} me={me?.id ?? ''} onChange={reload} /> : <p>None.</p>}
          </Panel>
          <Panel title="Withdrawals to decide" id="pending-withdrawals">
            <p className="muted">Approving or rejecting a withdrawal makes a proposal; it is done once enough operators approve it above.</p>
            <WithdrawalTable
              withdrawals={data.withdrawals}
              actions={(id) => (
                <>
                  <ActionButton action={() => request(ApproveWithdrawalMutation, { id })} onDone={reload} label={`Approve withdrawal ${id}`}>
                    Approve
                  </ActionButton>
                  <ActionButton action={() => request(RejectWithdrawalMutation, { id })} onDone={reload} label={`Reject withdrawal ${id}`}>
                    Reject
                  </ActionButton>
                </>
              )}
            />
          </Panel>
          <Panel title="Recent proposals" id="recent-proposals">
            <ProposalTable proposals={data.decided} me={me?.id ?? ''} onChange={reload} />
          </Panel>
        </>
      )}
    </OperatorPage>
  );
}

function ProposalTable({ proposals, me, onChange }: { proposals: Proposal[]; me: string; onChange: () => void }) {
  return (
    <table className="data" aria-label="Proposals">
      <TableHead columns={['Id', 'Proposed', 'What', 'Approvals', 'Status']} actions />
      <tbody>
        {proposals.map((p) => (
          <tr key={p.id} data-proposal-id={p.id}>
            <td>{p.id}</td>
            <td>
              <When at={p.createdAt} />
            </td>
            <td className="wrap">{p.description}</td>
            <td>
              {p.approvals.length} of {p.required} (operators {p.approvals.join(', ')})
            </td>
            <td data-testid="proposal-status">
              {words(p.status)}
              {p.rejectionReason ? `: ${p.rejectionReason}` : ''}
            </td>
            <td>{p.status === 'PENDING' ? <Decide proposal={p} mine={p.approvals.includes(me)} onChange={onChange} /> : null}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Decide({ proposal, mine, onChange }: { proposal: Proposal; mine: boolean; onChange: () => void }) {
  const [rejecting, setRejecting] = useState(false);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  async function reject(event: FormEvent) {
    event.preventDefault();
    setError(null);
    try {
      await request(RejectProposalMutation, { id: proposal.id, reason: reason.trim() });
      onChange();
    } catch (failure) {
      setError(failure);
    }
  }
  return (
    <div className="decide">
      {mine ? (
        <span className="muted">You approved it</span>
      ) : (
        <ActionButton action={() => request(ApproveProposalMutation, { id: proposal.id })} onDone={onChange} label={`Approve proposal ${proposal.id}`}>
          Approve
        </ActionButton>
      )}
      {rejecting ? (
        <Form onSubmit={reject} aria-label={`Reject proposal ${proposal.id}`}>
          <Field label="Why" name="reason" isRequired value={reason} onChange={setReason} />
          <ErrorMessage error={error} />
          <Button type="submit">Reject</Button>
        </Form>
      ) : (
        <Button onPress={() => setRejecting(true)} aria-label={`Reject proposal ${proposal.id}…`}>
          Reject…
        </Button>
      )}
    </div>
  );
}

/// What a proposing mutation answered, in words.
function proposed(p: { id: string; status: string; approvals: string[]; required: number }): string {
  return p.status === 'EXECUTED' ? `Proposal ${p.id}: done.` : `Proposal ${p.id}: ${words(p.status)}, ${p.approvals.length} of ${p.required} approvals.`;
}

export function Users() {
  const [email, setEmail] = useState('');
  const [looked, setLooked] = useState<string | null>(null);
  const frozen = useQuery(FrozenQuery);
  function lookUp(event: FormEvent) {
    event.preventDefault();
    setLooked(email.trim());
  }
  return (
    <OperatorPage title="Users">
      <Panel title="Find a user" id="find-user">
        <Form onSubmit={lookUp} aria-label="Find a user" className="inline">
          <Field label="Email" type="email" name="email" isRequired value={email} onChange={setEmail} />
          <Button type="submit">Find</Button>
        </Form>
        {looked ? <UserCard email={looked} onChange={frozen.reload} /> : null}
      </Panel>
      <Panel title="Frozen accounts" id="frozen">
        <ErrorMessage error={frozen.error} />
        {frozen.data?.frozenAccounts.length ? (
          <ul>
            {frozen.data.frozenAccounts.map((u) => (
              <li key={u.id}>
                {u.email} (user {u.id})
              </li>
            ))}
          </ul>
        ) : (
          <p>None.</p>
        )}
      </Panel>
    </OperatorPage>
  );
}

function UserCard({ email, onChange }: { email: string; onChange: () => void }) {
  const { data, error, reload } = useQuery(UserStandingQuery, { email });
  const [tier, setTier] = useState('');
  const [cancelOrders, setCancelOrders] = useState(true);
  const [asset, setAsset] = useState('');
  const [amount, setAmount] = useState('');
  const [reference, setReference] = useState('');
  const [said, setSaid] = useState<string | null>(null);
  const [formError, setFormError] = useState<unknown>(null);
  if (error) return <ErrorMessage error={error} />;
  if (!data) return <Loading what="the user" />;
  const standing = data.userStanding;
  if (!standing) return <p role="status">No account with this email.</p>;
  const after = (answer: string) => {
    setSaid(answer);
    reload();
    onChange();
  };
  async function submit(event: FormEvent, action: () => Promise<string>) {
    event.preventDefault();
    setFormError(null);
    setSaid(null);
    try {
      after(await action());
    } catch (failure) {
      setFormError(failure);
    }
  }
  const { user } = standing;
  return (
    <section aria-label={`User ${user.email}`} className="user-card">
      <dl className="facts">
        <dt>User</dt>
        <dd>
          {user.email} (id {user.id}), {user.role === 'OPERATOR' ? 'operator' : 'user'} since <When at={user.createdAt} />
        </dd>
        <dt>Two-factor</dt>
        <dd>{user.twoFactorEnabled ? 'on' : 'off'}</dd>
        <dt>Tier</dt>
        <dd data-testid="user-tier">{standing.tier}</dd>
        <dt>Account</dt>
        <dd data-testid="user-frozen">{standing.frozen ? 'frozen' : 'active'}</dd>
        <dt>Kill switch</dt>
        <dd>{standing.killSwitch.engaged ? `engaged${standing.killSwitch.engagedByOperators ? ' by operators' : ''}${standing.killSwitch.engagedByUser ? ' by the user' : ''}` : 'off'}</dd>
      </dl>
      {said ? <p role="status">{said}</p> : null}
      <ErrorMessage error={formError} />
      <div className="columns">
        <Form onSubmit={(e) => submit(e, async () => proposed((await request(SetTierMutation, { email: user.email, tier: Number(tier) })).setUserTier))} aria-label="Set the tier">
          <Field label="New tier (0 to 9)" name="tier" isRequired inputMode="numeric" value={tier} onChange={setTier} validate={(v) => (v === '' || /^[0-9]$/.test(v) ? null : 'A tier is 0 to 9')} />
          <Button type="submit">Propose tier</Button>
        </Form>
        <div className="actions">
          {standing.frozen ? (
            <ActionButton action={async () => after(proposed((await request(UnfreezeMutation, { email: user.email })).unfreezeAccount))}>Propose to unfreeze</ActionButton>
          ) : (
            <>
              <Checkbox isSelected={cancelOrders} onChange={setCancelOrders}>
                <span className="box" aria-hidden="true" />
                Cancel its open orders too
              </Checkbox>
              <ActionButton action={async () => after(proposed((await request(FreezeMutation, { email: user.email, cancelOpenOrders: cancelOrders })).freezeAccount))} className="danger">
                Propose to freeze
              </ActionButton>
            </>
          )}
          {standing.killSwitch.engagedByOperators ? (
            <ActionButton action={async () => after(proposed((await request(LiftKillSwitchForMutation, { email: user.email })).liftKillSwitchFor))}>Propose to lift the kill switch</ActionButton>
          ) : (
            <ActionButton action={async () => after(proposed((await request(EngageKillSwitchForMutation, { email: user.email })).engageKillSwitchFor))}>Propose a kill switch on its trading</ActionButton>
          )}
          {user.role !== 'OPERATOR' ? (
            <ActionButton action={async () => after(proposed((await request(ProposeOperatorMutation, { email: user.email })).proposeOperator))}>Propose as an operator</ActionButton>
          ) : null}
        </div>
        <Form
          onSubmit={(e) =>
            submit(e, async () => {
              const entry = (await request(DepositMutation, { email: user.email, asset: asset.trim(), amount: amount.trim(), reference: reference.trim() })).deposit;
              return `Deposited ${entry.amount} ${entry.asset}.`;
            })
          }
          aria-label="Credit a deposit"
        >
          <Field label="Asset" name="asset" isRequired value={asset} onChange={setAsset} />
          <Field label="Amount" name="amount" isRequired inputMode="decimal" value={amount} onChange={setAmount} />
          <Field label="Reference (the bank's or the chain's)" name="reference" isRequired value={reference} onChange={setReference} />
          <Button type="submit">Propose deposit</Button>
        </Form>
      </div>
      <InvestorStanding userId={user.id} email={user.email} />
    </section>
  );
}

export function MarketsAdmin() {
  const { data, error, reload } = useQuery(MarketsAdminQuery);
  return (
    <OperatorPage title="Assets and markets">
      <ErrorMessage error={error} />
      {!data ? (
        error ? null : <Loading what="assets and markets" />
      ) : (
        <>
          <Panel title="Markets" id="admin-markets">
            <table className="data" aria-label="Markets">
              <TableHead columns={['Market', ['Tick', 'number'], ['Lot', 'number'], ['Maker / taker fee', 'number'], ['Price band', 'number'], ['Last price', 'number'], 'Trading']} actions />
              <tbody>
                {data.markets.map((m) => (
                  <tr key={m.id} data-market={m.id}>
                    <th scope="row">
                      <Link href={`/trade/${encodeURIComponent(m.id)}`}>{m.id}</Link>
                    </th>
                    <td className="number">{m.tickSize}</td>
                    <td className="number">{m.lotSize}</td>
                    <td className="number">
                      {m.makerFeeRate} / {m.takerFeeRate}
                    </td>
                    <td className="number">{m.priceBand ?? 'none'}</td>
                    <td className="number">{formatDecimal(m.lastPrice)}</td>
                    <td>{m.trading ? 'yes' : 'halted'}</td>
                    <td>
                      {m.trading ? (
                        <ActionButton action={() => request(HaltMutation, { market: m.id })} onDone={reload} label={`Halt ${m.id}`} className="danger">
                          Halt
                        </ActionButton>
                      ) : (
                        <ActionButton action={() => request(ResumeMutation, { market: m.id })} onDone={reload} label={`Resume ${m.id}`}>
                          Resume
                        </ActionButton>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <h3>List a market</h3>
            <CreateMarket onDone={reload} />
          </Panel>
          <div className="columns">
            <Panel title="Assets" id="admin-assets">
              <table className="data" aria-label="Assets">
                <TableHead columns={['Symbol', ['Decimals', 'number']]} />
                <tbody>
                  {data.assets.map((a) => (
                    <tr key={a.id}>
                      <th scope="row">{a.symbol}</th>
                      <td className="number">{a.scale}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <h3>Add an asset</h3>
              <CreateAsset onDone={reload} />
            </Panel>
            <Panel title="House inventory" id="house">
              <HouseInventory balances={data.houseBalances} onDone={reload} />
            </Panel>
          </div>
          <Panel title="Perpetual markets" id="admin-perpetuals">
            <PerpetualMarkets markets={data.perpetualMarkets} onDone={reload} />
          </Panel>
          <Panel title="Convert pairs" id="admin-convert">
            <ConvertPairs positions={data.convertPositions} onDone={reload} />
          </Panel>
        </>
      )}
    </OperatorPage>
  );
}

/// A form whose submit runs `action` and says what it answered.
export function ProposalForm({ label, submit, children, onDone }: { label: string; submit: () => Promise<string>; children: ReactNode; onDone: () => void }) {
  const [said, setSaid] = useState<string | null>(null);
  const { busy, error, submit: submitting } = useSubmit();
  const run = submitting(async () => {
    setSaid(null);
    setSaid(await submit());
    onDone();
  });
  return (
    <Form onSubmit={run} aria-label={label}>
      {children}
      <ErrorMessage error={error} />
      {said ? <p role="status">{said}</p> : null}
      <Button type="submit" isDisabled={busy}>
        {busy ? 'Working…' : label}
      </Button>
    </Form>
  );
}

function CreateAsset({ onDone }: { onDone: () => void }) {
  const [symbol, setSymbol] = useState('');
  const [scale, setScale] = useState('');
  return (
    <ProposalForm
      label="Add asset"
      onDone={onDone}
      submit={async () => `Asset ${(await request(CreateAssetMutation, { symbol: symbol.trim(), scale: Number(scale) })).createAsset.symbol} added.`}
    >
      <Field label="Symbol" name="symbol" isRequired value={symbol} onChange={setSymbol} />
      <Field label="Decimals (0 to 18)" name="scale" isRequired inputMode="numeric" value={scale} onChange={setScale} validate={(v) => (v === '' || /^\d{1,2}$/.test(v) ? null : 'A whole number')} />
    </ProposalForm>
  );
}

function CreateMarket({ onDone }: { onDone: () => void }) {
  const [base, setBase] = useState('');
  const [quote, setQuote] = useState('');
  const [tickSize, setTickSize] = useState('');
  const [lotSize, setLotSize] = useState('');
  const [makerFeeRate, setMakerFeeRate] = useState('0.001');
  const [takerFeeRate, setTakerFeeRate] = useState('0.002');
  const [priceBand, setPriceBand] = useState('');
  return (
    <ProposalForm
      label="List market"
      onDone={onDone}
      submit={async () => {
        const input = { base: base.trim(), quote: quote.trim(), tickSize: tickSize.trim(), lotSize: lotSize.trim(), makerFeeRate: makerFeeRate.trim(), takerFeeRate: takerFeeRate.trim(), priceBand: priceBand.trim() || null };
        return `Market ${(await request(CreateMarketMutation, { input })).createMarket.id} listed.`;
      }}
    >
      <div className="columns">
        <Field label="Base asset" name="base" isRequired value={base} onChange={setBase} />
        <Field label="Quote asset" name="quote" isRequired value={quote} onChange={setQuote} />
        <Field label="Tick size" name="tickSize" isRequired inputMode="decimal" value={tickSize} onChange={setTickSize} />
        <Field label="Lot size" name="lotSize" isRequired inputMode="decimal" value={lotSize} onChange={setLotSize} />
        <Field label="Maker fee rate" name="makerFeeRate" isRequired inputMode="decimal" value={makerFeeRate} onChange={setMakerFeeRate} />
        <Field label="Taker fee rate" name="takerFeeRate" isRequired inputMode="decimal" value={takerFeeRate} onChange={setTakerFeeRate} />
        <Field label="Price band (optional)" name="priceBand" inputMode="decimal" value={priceBand} onChange={setPriceBand} description="0.1 refuses limit prices more than 10% from the last trade" />
      </div>
    </ProposalForm>
  );
}

function HouseInventory({ balances, onDone }: { balances: ResultOf<typeof MarketsAdminQuery>['houseBalances']; onDone: () => void }) {
  const [asset, setAsset] = useState('');
  const [amount, setAmount] = useState('');
  const [reference, setReference] = useState('');
  const [direction, setDirection] = useState<'fund' | 'defund'>('fund');
  return (
    <>
      <table className="data" aria-label="House inventory">
        <TableHead columns={['Asset', ['Inventory', 'number'], ['Revenue', 'number']]} />
        <tbody>
          {balances.map((b) => (
            <tr key={b.asset}>
              <th scope="row">{b.asset}</th>
              <td className="number">{formatDecimal(b.inventory)}</td>
              <td className="number">{formatDecimal(b.revenue)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Move inventory</h3>
      <ProposalForm
        label={direction === 'fund' ? 'Fund the house' : 'Take back to custody'}
        onDone={onDone}
        submit={async () => {
          const variables = { asset: asset.trim(), amount: amount.trim(), reference: reference.trim() };
          const answer = direction === 'fund' ? (await request(FundHouseMutation, variables)).fundHouse : (await request(DefundHouseMutation, variables)).defundHouse;
          return `The house now holds ${answer.inventory} ${answer.asset}.`;
        }}
      >
        <Checkbox isSelected={direction === 'defund'} onChange={(on) => setDirection(on ? 'defund' : 'fund')}>
          <span className="box" aria-hidden="true" />
          Take out of the inventory instead
        </Checkbox>
        <Field label="Asset" name="asset" isRequired value={asset} onChange={setAsset} />
        <Field label="Amount" name="amount" isRequired inputMode="decimal" value={amount} onChange={setAmount} />
        <Field label="Reference" name="reference" isRequired value={reference} onChange={setReference} />
      </ProposalForm>
    </>
  );
}

type AuditPage = ResultOf<typeof AuditLogQuery>['auditLog'];

export function Audit() {
  const [before, setBefore] = useState<string | null>(null);
  const { data, error } = useQuery(AuditLogQuery, { before });
  return (
    <OperatorPage title="Audit log">
      <Panel title="Hash chain" id="chain">
        <ChainCheck />
      </Panel>
      <Panel title="Records" id="records">
        <ErrorMessage error={error} />
        {!data ? error ? null : <Loading what="the audit log" /> : <AuditTable page={data.auditLog} />}
        {data && data.auditLog.records.length ? (
          <div className="toolbar">
            {before ? <Button onPress={() => setBefore(null)}>Newest</Button> : null}
            {data.auditLog.records[data.auditLog.records.length - 1].sequence !== '1' ? (
              <Button onPress={() => setBefore(data.auditLog.records[data.auditLog.records.length - 1].sequence)}>Older</Button>
            ) : null}
          </div>
        ) : null}
      </Panel>
    </OperatorPage>
  );
}

function AuditTable({ page }: { page: AuditPage }) {
  if (page.records.length === 0) return <p>The log is empty.</p>;
  return (
    <table className="data" aria-label="Audit records">
      <TableHead columns={[['#', 'number'], 'When', 'Kind', 'What', 'Hash']} />
      <tbody>
        {page.records.map((r) => (
          <tr key={r.sequence}>
            <td className="number">{r.sequence}</td>
            <td>
              <When at={r.at} />
            </td>
            <td>{words(r.kind)}</td>
            <td className="wrap">{r.description}</td>
            <td>
              <code title={r.hash}>{r.hash.slice(0, 12)}…</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type Check = ResultOf<typeof VerifyAuditQuery>['verifyAuditLog'];

/// Checks the whole chain a step at a time, with its progress.
function ChainCheck() {
  const [check, setCheck] = useState<Check | null>(null);
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function run() {
    setRunning(true);
    setError(null);
    setCheck(null);
    try {
      let step = (await request(VerifyAuditQuery, { after: '0', afterHash: null })).verifyAuditLog;
      setCheck(step);
      while (!step.complete) {
        step = (await request(VerifyAuditQuery, { after: step.checkedThrough, afterHash: step.lastHash })).verifyAuditLog;
        setCheck(step);
      }
    } catch (failure) {
      setError(failure);
    } finally {
      setRunning(false);
    }
  }
  const total = Number(check?.headSequence ?? 0);
  const done = Number(check?.checkedThrough ?? 0);
  return (
    <>
      <p>Each record carries the hash of the one before it: a record changed, removed or reordered breaks the chain.</p>
      <Button onPress={run} isDisabled={running}>
        {running ? 'Checking…' : 'Check the chain'}
      </Button>
      {check ? (
        <>
          <progress max={Math.max(total, 1)} value={done} aria-label="Records checked">
            {done} of {total}
          </progress>
          <p role="status" data-testid="chain-result" className={check.broken ? 'bad' : check.complete ? 'ok' : undefined}>
            {check.broken
              ? `✗ The chain breaks: ${check.broken}`
              : check.complete
                ? `✓ Verified: records 1 to ${check.headSequence}, each linked to the one before; head ${check.lastHash.slice(0, 16)}…`
                : `Checked ${done} of ${total} records…`}
          </p>
        </>
      ) : null}
      <ErrorMessage error={error} />
    </>
  );
}

/// Convert's pairs and the house's position through each; pausing, resuming
/// and setting a pair are proposals like every operator action.
function ConvertPairs({ positions, onDone }: { positions: ResultOf<typeof MarketsAdminQuery>['convertPositions']; onDone: () => void }) {
  const [base, setBase] = useState('');
  const [quote, setQuote] = useState('');
  const [market, setMarket] = useState('');
  const [price, setPrice] = useState('');
  const [spreadBps, setSpreadBps] = useState('50');
  const [feeBps, setFeeBps] = useState('10');
  const [minAmount, setMinAmount] = useState('');
  const [maxAmount, setMaxAmount] = useState('');
  const [stepSize, setStepSize] = useState('');
  const [exposureLimitBase, setExposureLimitBase] = useState('');
  const [exposureLimitQuote, setExposureLimitQuote] = useState('');
  const optional = (value: string) => value.trim() || null;
  return (
    <>
      <table className="data" aria-label="Convert pairs">
        <TableHead columns={['Pair', 'Price from', ['Spread / fee (bps)', 'number'], ['Amounts', 'number'], ['Net position', 'number'], ['Exposure limit', 'number'], 'Quoting']} actions />
        <tbody>
          {positions.map(({ pair, ...p }) => {
            const name = `${pair.base}/${pair.quote}`;
            return (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td>{pair.market ? `the ${pair.market} book` : `${pair.price} ${pair.quote}`}</td>
                <td className="number">
                  {pair.spreadBps} / {pair.feeBps}
                </td>
                <td className="number">
                  {formatDecimal(pair.minAmount)} to {formatDecimal(pair.maxAmount)} by {pair.stepSize} {pair.base}
                </td>
                <td className="number">
                  {formatDecimal(p.netBase)} {pair.base}, {formatDecimal(p.netQuote)} {pair.quote}
                </td>
                <td className="number">
                  {formatDecimal(p.exposureLimitBase)} {pair.base}, {formatDecimal(p.exposureLimitQuote)} {pair.quote}
                </td>
                <td>{pair.paused ? 'paused' : 'yes'}</td>
                <td>
                  <ActionButton
                    action={() => request(SetConvertPairMutation, { base: pair.base, quote: pair.quote, paused: !pair.paused })}
                    onDone={onDone}
                    label={`${pair.paused ? 'Resume' : 'Pause'} ${name}`}
                    className={pair.paused ? undefined : 'danger'}
                  >
                    {pair.paused ? 'Resume' : 'Pause'}
                  </ActionButton>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {positions.length === 0 ? <p>No pairs yet.</p> : null}
      <h3>Set a pair</h3>
      <ProposalForm
        label="Set pair"
        onDone={onDone}
        submit={async () => {
          const answer = await request(SetConvertPairMutation, {
            base: base.trim(),
            quote: quote.trim(),
            market: optional(market),
            price: optional(price),
            spreadBps: spreadBps.trim() ? Number(spreadBps) : null,
            feeBps: feeBps.trim() ? Number(feeBps) : null,
            minAmount: optional(minAmount),
            maxAmount: optional(maxAmount),
            stepSize: optional(stepSize),
            exposureLimitBase: optional(exposureLimitBase),
            exposureLimitQuote: optional(exposureLimitQuote),
            paused: null,
          });
          return `Pair ${answer.setConvertPair.base}/${answer.setConvertPair.quote} set.`;
        }}
      >
        <div className="columns">
          <Field label="Base asset" name="convertBase" isRequired value={base} onChange={setBase} />
          <Field label="Quote asset" name="convertQuote" isRequired value={quote} onChange={setQuote} />
          <Field label="Market (price from its book)" name="convertMarket" value={market} onChange={setMarket} description="BTC-USD; or leave empty and set a price" />
          <Field label="Price (quote per base)" name="convertPrice" inputMode="decimal" value={price} onChange={setPrice} />
          <Field label="Spread (bps)" name="spreadBps" inputMode="numeric" value={spreadBps} onChange={setSpreadBps} />
          <Field label="Fee (bps)" name="feeBps" inputMode="numeric" value={feeBps} onChange={setFeeBps} />
          <Field label="Minimum (base)" name="minAmount" inputMode="decimal" value={minAmount} onChange={setMinAmount} />
          <Field label="Maximum (base)" name="maxAmount" inputMode="decimal" value={maxAmount} onChange={setMaxAmount} />
          <Field label="Step (base)" name="stepSize" inputMode="decimal" value={stepSize} onChange={setStepSize} />
          <Field label="Exposure limit (base)" name="exposureLimitBase" inputMode="decimal" value={exposureLimitBase} onChange={setExposureLimitBase} />
          <Field label="Exposure limit (quote)" name="exposureLimitQuote" inputMode="decimal" value={exposureLimitQuote} onChange={setExposureLimitQuote} />
        </div>
      </ProposalForm>
    </>
  );
}

/// A rate field's check: blank (when optional) or a decimal from 0 to 1.
function rate(optional: boolean) {
  return (v: string) => ((optional && v.trim() === '') || /^(0(\.\d+)?|1(\.0+)?)$/.test(v.trim()) ? null : 'A fraction from 0 to 1: 0.05 is 5%');
}

/// The perpetual markets, listing one (its contract, one margin bracket,
/// funding) and naming its oracles: proposals, like every operator action.
function PerpetualMarkets({ markets, onDone }: { markets: ResultOf<typeof MarketsAdminQuery>['perpetualMarkets']; onDone: () => void }) {
  const [base, setBase] = useState('');
  const [collateral, setCollateral] = useState('');
  const [tickSize, setTickSize] = useState('');
  const [lotSize, setLotSize] = useState('');
  const [makerFeeRate, setMakerFeeRate] = useState('0.0002');
  const [takerFeeRate, setTakerFeeRate] = useState('0.0005');
  const [maxNotional, setMaxNotional] = useState('');
  const [initialMarginRate, setInitialMarginRate] = useState('0.1');
  const [maintenanceMarginRate, setMaintenanceMarginRate] = useState('0.05');
  const [penaltyRate, setPenaltyRate] = useState('0.01');
  const [interestRate, setInterestRate] = useState('0.0001');
  const [fundingHours, setFundingHours] = useState('8');
  const [oracleMarket, setOracleMarket] = useState('');
  const [oracleEmail, setOracleEmail] = useState('');
  const [source, setSource] = useState('');
  const optional = (value: string) => value.trim() || null;
  return (
    <>
      {markets.length ? (
        <table className="data" aria-label="Listed perpetuals">
          <TableHead columns={['Market', ['Tick / lot', 'number'], ['Margin brackets', 'number'], ['Penalty', 'number'], 'Funding every', ['Mark / index', 'number'], ['Open interest', 'number'], ['Insurance fund', 'number']]} />
          <tbody>
            {markets.map((m) => (
              <tr key={m.id} data-market={m.id}>
                <th scope="row">
                  <Link href={`/trade/${encodeURIComponent(m.id)}`}>{m.id}</Link>
                </th>
                <td className="number">
                  {m.tickSize} / {m.lotSize}
                </td>
                <td className="number">
                  {m.marginBrackets.map((b) => `to ${formatDecimal(b.maxNotional)} ${m.collateral}: ${formatPercent(b.initialMarginRate, 2)} / ${formatPercent(b.maintenanceMarginRate, 2)} (${b.maxLeverage}×)`).join('; ')}
                </td>
                <td className="number">{formatPercent(m.liquidationPenaltyRate, 2)}</td>
                <td>{intervalOf(m.fundingIntervalMs)}</td>
                <td className="number">
                  {formatDecimal(m.markPrice)} / {formatDecimal(m.indexPrice)}
                </td>
                <td className="number">
                  {formatDecimal(m.openInterest)} {m.base}
                </td>
                <td className="number">
                  {formatDecimal(m.insuranceFund)} {m.collateral}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>No perpetual markets yet.</p>
      )}
      <h3>List a perpetual market</h3>
      <ProposalForm
        label="List a perpetual market"
        onDone={onDone}
        submit={async () => {
          const hours = fundingHours.trim();
          const input = {
            base: base.trim(),
            collateral: collateral.trim(),
            tickSize: tickSize.trim(),
            lotSize: lotSize.trim(),
            makerFeeRate: makerFeeRate.trim(),
            takerFeeRate: takerFeeRate.trim(),
            marginBrackets: [{ maxNotional: maxNotional.trim(), initialMarginRate: initialMarginRate.trim(), maintenanceMarginRate: maintenanceMarginRate.trim() }],
            liquidationPenaltyRate: optional(penaltyRate),
            interestRate: optional(interestRate),
            fundingIntervalMs: hours ? Math.round(Number(hours) * 3_600_000) : null,
          };
          const market = (await request(CreatePerpetualMarketMutation, { input })).createPerpetualMarket;
          return `Market ${market.id} listed: up to ${market.maxLeverage}× leverage, funding every ${intervalOf(market.fundingIntervalMs)}.`;
        }}
      >
        <div className="columns">
          <Field label="Base asset" name="perpBase" isRequired value={base} onChange={setBase} description="What the contracts are on: BTC" />
          <Field label="Collateral asset" name="perpCollateral" isRequired value={collateral} onChange={setCollateral} description="What margin and profit are paid in: USD" />
          <Field label="Tick size" name="perpTickSize" isRequired inputMode="decimal" value={tickSize} onChange={setTickSize} validate={(v) => (v === '' || isDecimal(v) ? null : 'A price step such as 0.1')} />
          <Field label="Lot size" name="perpLotSize" isRequired inputMode="decimal" value={lotSize} onChange={setLotSize} description="The contract size, in the base" validate={(v) => (v === '' || isDecimal(v) ? null : 'A size such as 0.001')} />
          <Field label="Maker fee rate" name="perpMakerFeeRate" isRequired inputMode="decimal" value={makerFeeRate} onChange={setMakerFeeRate} validate={rate(false)} />
          <Field label="Taker fee rate" name="perpTakerFeeRate" isRequired inputMode="decimal" value={takerFeeRate} onChange={setTakerFeeRate} validate={rate(false)} />
          <Field label="Max notional" name="perpMaxNotional" isRequired inputMode="decimal" value={maxNotional} onChange={setMaxNotional} description="The margin bracket: positions up to this, in the collateral" validate={(v) => (v === '' || isDecimal(v) ? null : 'An amount of the collateral')} />
          <Field label="Initial margin rate" name="perpInitialMarginRate" isRequired inputMode="decimal" value={initialMarginRate} onChange={setInitialMarginRate} description="0.1 is 10%: 10× leverage at most" validate={rate(false)} />
          <Field label="Maintenance margin rate" name="perpMaintenanceMarginRate" isRequired inputMode="decimal" value={maintenanceMarginRate} onChange={setMaintenanceMarginRate} description="Below it a position is liquidated" validate={rate(false)} />
          <Field label="Liquidation penalty rate" name="perpPenaltyRate" inputMode="decimal" value={penaltyRate} onChange={setPenaltyRate} description="Of the notional, to the insurance fund; blank is 1%" validate={rate(true)} />
          <Field label="Interest rate per interval" name="perpInterestRate" inputMode="decimal" value={interestRate} onChange={setInterestRate} description="Blank is 0.0001 (0.01%)" validate={rate(true)} />
          <Field
            label="Funding interval (hours)"
            name="perpFundingHours"
            inputMode="decimal"
            value={fundingHours}
            onChange={setFundingHours}
            description="Blank is 8 hours"
            validate={(v) => (v === '' || (isDecimal(v) && Number(v) * 3_600_000 >= 1 && Number(v) * 3_600_000 < 2 ** 31) ? null : 'Hours above zero, up to 596')}
          />
        </div>
      </ProposalForm>
      <h3>Set an oracle</h3>
      <p className="muted">An oracle sends the market's prices (submitOraclePrice): the index is the median of their fresh prices. Leave the source blank to take the role back.</p>
      <ProposalForm
        label="Set oracle"
        onDone={onDone}
        submit={async () => {
          const number = source.trim() === '' ? null : Number(source);
          await request(SetOracleMutation, { market: oracleMarket.trim(), email: oracleEmail.trim(), source: number });
          return number === null ? `${oracleEmail.trim()} no longer prices ${oracleMarket.trim()}.` : `${oracleEmail.trim()} prices ${oracleMarket.trim()} as source ${number}.`;
        }}
      >
        <div className="columns">
          <Field label="Market" name="oracleMarket" isRequired value={oracleMarket} onChange={setOracleMarket} description="A perpetual market's id, such as BTC-USD-PERP" />
          <Field label="User email" name="oracleEmail" type="email" isRequired value={oracleEmail} onChange={setOracleEmail} />
          <Field label="Source number" name="oracleSource" inputMode="numeric" value={source} onChange={setSource} description="One no other oracle of the market has; blank takes the role back" validate={(v) => (v === '' || /^\d{1,9}$/.test(v) ? null : 'A whole number')} />
        </div>
      </ProposalForm>
    </>
  );
}
