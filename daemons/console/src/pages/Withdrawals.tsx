import { useState, type ReactNode } from 'react';
import { Button, Form } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, Choice, ErrorMessage, Field, Loading, Panel, TableHead, When, newIdempotencyKey, useQuery, useSubmit, useTwoFactorCode, words } from '../components';
import { formatDecimal, isDecimal } from '../decimal';
import { graphql, type ResultOf } from '../graphql';

const WithdrawalsQuery = graphql(`
  query WithdrawalsPage {
    assets { symbol scale }
    balances { asset available locked }
    addressBook { id asset network address memo label usable usableFrom }
    withdrawalSettings { allowlistOnly allowlistOnlyEndsAt }
    withdrawalLimits { tier tierName referenceAsset daily { hours limit used remaining } monthly { hours limit used remaining } }
    withdrawals { id asset amount destination status createdAt reviewReason }
  }
`);

const RequestWithdrawalMutation = graphql(`
  mutation RequestWithdrawal($asset: String!, $amount: Decimal!, $destination: String!, $idempotencyKey: String!, $twoFactorCode: String, $addressBookEntry: ID) {
    requestWithdrawal(asset: $asset, amount: $amount, destination: $destination, idempotencyKey: $idempotencyKey, twoFactorCode: $twoFactorCode, addressBookEntry: $addressBookEntry) {
      id status reviewReason
    }
  }
`);

const AddEntryMutation = graphql(`
  mutation AddAddressBookEntry($input: AddressBookEntryInput!, $twoFactorCode: String) {
    addAddressBookEntry(input: $input, twoFactorCode: $twoFactorCode) { id usableFrom }
  }
`);

const RemoveEntryMutation = graphql(`
  mutation RemoveAddressBookEntry($id: ID!, $twoFactorCode: String) {
    removeAddressBookEntry(id: $id, twoFactorCode: $twoFactorCode)
  }
`);

const AllowlistMutation = graphql(`
  mutation SetAllowlistOnly($enabled: Boolean!, $twoFactorCode: String) {
    setWithdrawalAllowlistOnly(enabled: $enabled, twoFactorCode: $twoFactorCode) { allowlistOnly allowlistOnlyEndsAt }
  }
`);

type Data = ResultOf<typeof WithdrawalsQuery>;
type Entry = Data['addressBook'][number];

/// Withdrawals: the address book, a request, the caller's withdrawals and limits.
export function Withdrawals() {
  const { data, error, reload } = useQuery(WithdrawalsQuery);
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="withdrawals" />}</main>;
  return (
    <main>
      <h1>Withdrawals</h1>
      <ErrorMessage error={error} />
      <div className="columns">
        <Panel title="Request a withdrawal" id="request-withdrawal">
          <RequestForm data={data} onDone={reload} />
        </Panel>
        <Panel title="Limits" id="limits">
          <Limits limits={data.withdrawalLimits} />
        </Panel>
      </div>
      <Panel title="Your withdrawals" id="my-withdrawals">
        <WithdrawalTable withdrawals={data.withdrawals} />
      </Panel>
      <Panel title="Address book" id="address-book">
        <AddressBook data={data} onChange={reload} />
      </Panel>
    </main>
  );
}

function RequestForm({ data, onDone }: { data: Data; onDone: () => void }) {
  const [asset, setAsset] = useState(data.balances[0]?.asset ?? data.assets[0]?.symbol ?? '');
  const [amount, setAmount] = useState('');
  const [entry, setEntry] = useState<string>('');
  const [destination, setDestination] = useState('');
  // One key per withdrawal the user means: a retry of the same form sends it again.
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [twoFactorCode, codeField] = useTwoFactorCode();
  const [done, setDone] = useState<string | null>(null);
  const { busy, error, submit } = useSubmit();
  const scale = data.assets.find((a) => a.symbol === asset)?.scale;
  const balance = data.balances.find((b) => b.asset === asset);
  const entries = data.addressBook.filter((e) => e.asset === asset && e.usable);
  const chosen = entries.find((e) => e.id === entry);
  const allowlistOnly = data.withdrawalSettings.allowlistOnly;

  const requestWithdrawal = submit(async () => {
    setDone(null);
    const answer = await request(RequestWithdrawalMutation, {
      asset,
      amount: amount.trim(),
      destination: chosen ? chosen.address : destination.trim(),
      idempotencyKey,
      twoFactorCode,
      addressBookEntry: chosen?.id ?? null,
    });
    const withdrawal = answer.requestWithdrawal;
    setDone(`Withdrawal ${withdrawal.id} is ${words(withdrawal.status)}${withdrawal.reviewReason ? `: ${withdrawal.reviewReason}` : ''}. The operators approve it before it is sent.`);
    setAmount('');
    setIdempotencyKey(newIdempotencyKey());
    onDone();
  });

  const assetOptions: [string, string][] = data.assets.map((a) => [a.symbol, a.symbol]);
  const entryOptions: [string, string][] = [['', allowlistOnly ? 'Choose an address' : 'Another address'], ...entries.map((e): [string, string] => [e.id, `${e.label} (${e.address})`])];
  return (
    <Form onSubmit={requestWithdrawal} aria-label="Request a withdrawal">
      {assetOptions.length ? <Choice label="Asset" options={assetOptions} value={asset} onChange={(value) => { setAsset(value); setEntry(''); }} /> : <p>No assets yet.</p>}
      <p className="muted">
        Available: <span data-testid="withdrawable">{formatDecimal(balance?.available ?? '0', scale)}</span> {asset}
      </p>
      <Field
        label={`Amount (${asset})`}
        name="amount"
        isRequired
        inputMode="decimal"
        value={amount}
        onChange={setAmount}
        validate={(v) => (v === '' || isDecimal(v, scale) ? null : `An amount with at most ${scale ?? 0} decimals`)}
      />
      <Choice label="To" options={entryOptions} value={entry} onChange={setEntry} />
      {chosen ? null : allowlistOnly ? (
        <p>Withdrawals go only to your address book: add the address below and wait out its cooldown.</p>
      ) : (
        <Field label="Destination address" name="destination" isRequired value={destination} onChange={setDestination} />
      )}
      {codeField}
      <ErrorMessage error={error} />
      {done ? (
        <p role="status" className="placed">
          {done}
        </p>
      ) : null}
      <Button type="submit" className="primary" isDisabled={busy || (allowlistOnly && !chosen)}>
        {busy ? 'Requesting…' : 'Request withdrawal'}
      </Button>
    </Form>
  );
}

function Limits({ limits }: { limits: Data['withdrawalLimits'] }) {
  if (!limits) return <p>This site sets no withdrawal limits.</p>;
  return (
    <>
      <p>
        Tier {limits.tier} ({limits.tierName}). Over a limit, a withdrawal waits for an operator's review.
      </p>
      <table className="data" aria-label="Withdrawal limits">
        <TableHead columns={['Window', [`Limit (${limits.referenceAsset})`, 'number'], ['Used', 'number'], ['Remaining', 'number']]} />
        <tbody>
          {[limits.daily, limits.monthly].map((window) => (
            <tr key={window.hours}>
              <th scope="row">{window.hours === 24 ? '24 hours' : `${window.hours / 24} days`}</th>
              <td className="number">{formatDecimal(window.limit)}</td>
              <td className="number">{formatDecimal(window.used)}</td>
              <td className="number">{formatDecimal(window.remaining)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function WithdrawalTable({ withdrawals, actions }: { withdrawals: Data['withdrawals']; actions?: (id: string) => ReactNode }) {
  if (withdrawals.length === 0) return <p>No withdrawals.</p>;
  return (
    <table className="data" aria-label="Withdrawals">
      <TableHead columns={['Id', 'Requested', ['Amount', 'number'], 'Destination', 'Status']} actions={actions !== undefined} />
      <tbody>
        {withdrawals.map((w) => (
          <tr key={w.id} data-withdrawal-id={w.id}>
            <td>{w.id}</td>
            <td>
              <When at={w.createdAt} />
            </td>
            <td className="number">
              {formatDecimal(w.amount)} {w.asset}
            </td>
            <td className="wrap">{w.destination}</td>
            <td data-testid="withdrawal-status">
              {words(w.status)}
              {w.reviewReason ? <span className="muted"> (review: {w.reviewReason})</span> : null}
            </td>
            {actions ? <td>{w.status === 'PENDING' ? actions(w.id) : null}</td> : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function AddressBook({ data, onChange }: { data: Data; onChange: () => void }) {
  const [asset, setAsset] = useState(data.assets[0]?.symbol ?? '');
  const [network, setNetwork] = useState('');
  const [address, setAddress] = useState('');
  const [memo, setMemo] = useState('');
  const [label, setLabel] = useState('');
  const [twoFactorCode, codeField] = useTwoFactorCode();
  const { busy, error, submit } = useSubmit();
  const settings = data.withdrawalSettings;

  const add = submit(async () => {
    await request(AddEntryMutation, { input: { asset, network: network.trim(), address: address.trim(), memo: memo.trim() || null, label: label.trim() }, twoFactorCode });
    setAddress('');
    setMemo('');
    setLabel('');
    onChange();
  });

  return (
    <>
      <p>
        {settings.allowlistOnly ? 'Withdrawals go only to these addresses.' : 'Withdrawals may go to any address.'}
        {settings.allowlistOnlyEndsAt ? (
          <>
            {' '}
            Allowlist-only ends at <When at={settings.allowlistOnlyEndsAt} />.
          </>
        ) : null}{' '}
        <ActionButton action={() => request(AllowlistMutation, { enabled: !settings.allowlistOnly, twoFactorCode })} onDone={onChange}>
          {settings.allowlistOnly ? 'Allow any address (after the cooldown)' : 'Only the address book'}
        </ActionButton>
      </p>
      {codeField ? <div className="inline-field">{codeField}<p className="muted">Every change here needs a fresh code.</p></div> : null}
      {data.addressBook.length ? (
        <table className="data" aria-label="Address book">
          <TableHead columns={['Label', 'Asset', 'Network', 'Address', 'Usable']} actions />
          <tbody>
            {data.addressBook.map((entry: Entry) => (
              <tr key={entry.id} data-entry-id={entry.id}>
                <th scope="row">{entry.label}</th>
                <td>{entry.asset}</td>
                <td>{entry.network}</td>
                <td className="wrap">
                  {entry.address}
                  {entry.memo ? <span className="muted"> memo {entry.memo}</span> : null}
                </td>
                <td>{entry.usable ? 'yes' : <>from <When at={entry.usableFrom} /></>}</td>
                <td>
                  <ActionButton action={() => request(RemoveEntryMutation, { id: entry.id, twoFactorCode })} onDone={onChange} label={`Remove ${entry.label}`}>
                    Remove
                  </ActionButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>No addresses yet.</p>
      )}
      <h3>Add an address</h3>
      <Form onSubmit={add} aria-label="Add an address">
        <Choice label="Asset" options={data.assets.map((a): [string, string] => [a.symbol, a.symbol])} value={asset} onChange={setAsset} />
        <Field label="Network" name="network" isRequired value={network} onChange={setNetwork} description="bitcoin, ethereum… for a digital asset; SEPA, SWIFT… for money" />
        <Field label="Address" name="address" isRequired value={address} onChange={setAddress} />
        <Field label="Memo or tag (if the destination needs one)" name="memo" value={memo} onChange={setMemo} />
        <Field label="Label" name="label" isRequired value={label} onChange={setLabel} />
        <ErrorMessage error={error} />
        <Button type="submit" isDisabled={busy}>
          {busy ? 'Adding…' : 'Add address'}
        </Button>
      </Form>
    </>
  );
}
