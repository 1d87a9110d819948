import { useState, type FormEvent } from 'react';
import { Button, Checkbox, CheckboxGroup, Form, Label } from 'react-aria-components';
import { request } from '../api';
import { ActionButton, ErrorMessage, Field, Loading, Panel, TableHead, When, useQuery, useTwoFactorCode, words } from '../components';
import { graphql, type ResultOf } from '../graphql';
import { useSession } from '../session';

const SecurityQuery = graphql(`
  query SecurityPage {
    sessions { id createdAt lastSeenAt expiresAt address userAgent current }
    apiKeys { id name kind scopes ipAllowlist expiresAt createdAt }
    killSwitch { engaged engagedByUser engagedByOperators }
  }
`);

const RevokeSessionMutation = graphql(`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id)
  }
`);

const RevokeOtherSessionsMutation = graphql(`
  mutation RevokeOtherSessions {
    revokeOtherSessions
  }
`);

const ChangePasswordMutation = graphql(`
  mutation ChangePassword($currentPassword: String!, $newPassword: String!) {
    changePassword(currentPassword: $currentPassword, newPassword: $newPassword)
  }
`);

const EnrolMutation = graphql(`
  mutation EnrolTwoFactor($password: String!) {
    enrolTwoFactor(password: $password) { secret uri qrCodeSvg }
  }
`);

const ConfirmMutation = graphql(`
  mutation ConfirmTwoFactor($code: String!) {
    confirmTwoFactor(code: $code)
  }
`);

const DisableMutation = graphql(`
  mutation DisableTwoFactor($code: String!) {
    disableTwoFactor(code: $code)
  }
`);

const CreateKeyMutation = graphql(`
  mutation CreateApiKey($input: CreateApiKeyInput!, $twoFactorCode: String) {
    createApiKey(input: $input, twoFactorCode: $twoFactorCode) { key { id name } secret }
  }
`);

const RevokeKeyMutation = graphql(`
  mutation RevokeApiKey($id: ID!) {
    revokeApiKey(id: $id)
  }
`);

const EngageKillSwitchMutation = graphql(`
  mutation EngageKillSwitch {
    engageKillSwitch { engaged ordersCancelled }
  }
`);

const LiftKillSwitchMutation = graphql(`
  mutation LiftKillSwitch {
    liftKillSwitch { engaged }
  }
`);

type Data = ResultOf<typeof SecurityQuery>;

/// The account's security: sessions, password, two-factor, API keys and the kill switch.
export function Security() {
  const { data, error, reload } = useQuery(SecurityQuery);
  if (!data) return <main>{error ? <ErrorMessage error={error} /> : <Loading what="security settings" />}</main>;
  return (
    <main>
      <h1>Security</h1>
      <ErrorMessage error={error} />
      <div className="columns">
        <Panel title="Two-factor authentication" id="two-factor">
          <TwoFactor />
        </Panel>
        <Panel title="Password" id="password">
          <ChangePassword />
        </Panel>
      </div>
      <Panel title="Sessions" id="sessions">
        <Sessions sessions={data.sessions} onChange={reload} />
      </Panel>
      <Panel title="API keys" id="api-keys">
        <ApiKeys keys={data.apiKeys} onChange={reload} />
      </Panel>
      <Panel title="Kill switch" id="kill-switch">
        <KillSwitch state={data.killSwitch} onChange={reload} />
      </Panel>
    </main>
  );
}

function Sessions({ sessions, onChange }: { sessions: Data['sessions']; onChange: () => void }) {
  return (
    <>
      <table className="data" aria-label="Sessions">
        <TableHead columns={['Signed in', 'Last seen', 'From', 'Browser or client']} actions />
        <tbody>
          {sessions.map((session) => (
            <tr key={session.id}>
              <td>
                <When at={session.createdAt} />
              </td>
              <td>
                <When at={session.lastSeenAt} />
              </td>
              <td>{session.address}</td>
              <td className="wrap">{session.userAgent}</td>
              <td>
                {session.current ? (
                  <strong>This session</strong>
                ) : (
                  <ActionButton action={() => request(RevokeSessionMutation, { id: session.id })} onDone={onChange} label={`End the session from ${session.address}`}>
                    End
                  </ActionButton>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {sessions.length > 1 ? (
        <ActionButton action={() => request(RevokeOtherSessionsMutation)} onDone={onChange}>
          End every other session
        </ActionButton>
      ) : null}
    </>
  );
}

function ChangePassword() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setDone(false);
    try {
      await request(ChangePasswordMutation, { currentPassword: current, newPassword: next });
      setCurrent('');
      setNext('');
      setDone(true);
    } catch (failure) {
      setError(failure);
    }
  }
  return (
    <Form onSubmit={submit} aria-label="Change the password">
      <Field label="Current password" type="password" name="currentPassword" isRequired autoComplete="current-password" value={current} onChange={setCurrent} />
      <Field label="New password" type="password" name="newPassword" isRequired autoComplete="new-password" value={next} onChange={setNext} />
      <ErrorMessage error={error} />
      {done ? (
        <p role="status" className="placed">
          Password changed; every other session has ended.
        </p>
      ) : null}
      <Button type="submit">Change password</Button>
    </Form>
  );
}

type Enrolment = ResultOf<typeof EnrolMutation>['enrolTwoFactor'];

function TwoFactor() {
  const { me, refresh } = useSession();
  const [password, setPassword] = useState('');
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [code, setCode] = useState('');
  const [recoveryCodes, setRecoveryCodes] = useState<string[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  async function run(action: () => Promise<void>) {
    setError(null);
    try {
      await action();
    } catch (failure) {
      setError(failure);
    }
  }
  const enrol = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      setEnrolment((await request(EnrolMutation, { password })).enrolTwoFactor);
      setPassword('');
    });
  };
  const confirm = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      setRecoveryCodes((await request(ConfirmMutation, { code: code.trim() })).confirmTwoFactor);
      setEnrolment(null);
      setCode('');
      await refresh();
    });
  };
  const disable = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      await request(DisableMutation, { code: code.trim() });
      setCode('');
      setRecoveryCodes(null);
      await refresh();
    });
  };

  if (recoveryCodes) {
    return (
      <div role="status">
        <p>Two-factor authentication is on. These recovery codes are shown only now: keep them apart from the phone. Each works once in place of a code.</p>
        <ul className="codes" aria-label="Recovery codes">
          {recoveryCodes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ul>
        <Button onPress={() => setRecoveryCodes(null)}>I have kept them</Button>
      </div>
    );
  }
  if (me?.twoFactorEnabled) {
    return (
      <Form onSubmit={disable} aria-label="Turn two-factor authentication off">
        <p data-testid="two-factor-state">On: signing in, withdrawals and API keys need a code from your app.</p>
        <Field label="Code or recovery code" name="code" isRequired autoComplete="one-time-code" value={code} onChange={setCode} />
        <ErrorMessage error={error} />
        <Button type="submit">Turn off</Button>
      </Form>
    );
  }
  if (enrolment) {
    const qr = `data:image/svg+xml;base64,${btoa(enrolment.qrCodeSvg)}`;
    return (
      <Form onSubmit={confirm} aria-label="Confirm two-factor authentication">
        <p>Scan this code with an authenticator app, or type in the secret, then enter the code the app shows.</p>
        <img src={qr} alt="QR code of the two-factor secret" className="qr" width={200} height={200} />
        <p>
          Secret: <code data-testid="two-factor-secret">{enrolment.secret}</code>
        </p>
        <Field label="Code from the app" name="code" isRequired autoComplete="one-time-code" inputMode="numeric" value={code} onChange={setCode} />
        <ErrorMessage error={error} />
        <Button type="submit" className="primary">
          Confirm
        </Button>
      </Form>
    );
  }
  return (
    <Form onSubmit={enrol} aria-label="Turn two-factor authentication on">
      <p data-testid="two-factor-state">Off. With it on, signing in and withdrawing need a code from an authenticator app too.</p>
      <Field label="Password" type="password" name="password" isRequired autoComplete="current-password" value={password} onChange={setPassword} />
      <ErrorMessage error={error} />
      <Button type="submit">Set up two-factor authentication</Button>
    </Form>
  );
}

const SCOPES = [
  ['READ', 'Read: your orders, balances and the markets'],
  ['TRADE', 'Trade: place, amend and cancel orders'],
  ['WITHDRAW', 'Withdraw: to the address book only (needs an address allowlist)'],
] as const;
type Scope = (typeof SCOPES)[number][0];

function ApiKeys({ keys, onChange }: { keys: Data['apiKeys']; onChange: () => void }) {
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['READ']);
  const [allowlist, setAllowlist] = useState('');
  const [publicKey, setPublicKey] = useState('');
  const [twoFactorCode, codeField] = useTwoFactorCode();
  const [created, setCreated] = useState<ResultOf<typeof CreateKeyMutation>['createApiKey'] | null>(null);
  const [error, setError] = useState<unknown>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setCreated(null);
    try {
      const input = {
        name: name.trim(),
        scopes: scopes as Scope[],
        ipAllowlist: allowlist.split(/[\s,]+/).filter(Boolean),
        publicKey: publicKey.trim() || null,
      };
      setCreated((await request(CreateKeyMutation, { input, twoFactorCode })).createApiKey);
      setName('');
      setPublicKey('');
      onChange();
    } catch (failure) {
      setError(failure);
    }
  }

  return (
    <>
      {keys.length ? (
        <table className="data" aria-label="API keys">
          <TableHead columns={['Name', 'Key id', 'Kind', 'Scopes', 'Addresses', 'Expires']} actions />
          <tbody>
            {keys.map((key) => (
              <tr key={key.id}>
                <th scope="row">{key.name}</th>
                <td className="wrap">
                  <code>{key.id}</code>
                </td>
                <td>{key.kind === 'HMAC' ? 'HMAC' : 'Ed25519'}</td>
                <td>{key.scopes.map(words).join(', ')}</td>
                <td>{key.ipAllowlist.length ? key.ipAllowlist.join(', ') : 'any'}</td>
                <td>{key.expiresAt ? <When at={key.expiresAt} /> : 'never'}</td>
                <td>
                  <ActionButton action={() => request(RevokeKeyMutation, { id: key.id })} onDone={onChange} label={`Revoke the key ${key.name}`}>
                    Revoke
                  </ActionButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>No API keys.</p>
      )}
      {created ? (
        <div role="status" className="secret">
          <p>
            Key <code>{created.key.id}</code> created.
            {created.secret ? ' Its secret is shown only this once: copy it into the bot now.' : ' Requests are signed with your Ed25519 private key.'}
          </p>
          {created.secret ? <code data-testid="api-key-secret">{created.secret}</code> : null}
        </div>
      ) : null}
      <h3>Create a key</h3>
      <Form onSubmit={create} aria-label="Create an API key">
        <Field label="Name" name="name" isRequired value={name} onChange={setName} />
        <CheckboxGroup value={scopes} onChange={setScopes} isRequired>
          <Label>Scopes</Label>
          {SCOPES.map(([scope, description]) => (
            <Checkbox key={scope} value={scope}>
              <span className="box" aria-hidden="true" />
              {description}
            </Checkbox>
          ))}
        </CheckboxGroup>
        <Field label="Allowed addresses (optional)" name="ipAllowlist" value={allowlist} onChange={setAllowlist} description="203.0.113.7 or 203.0.113.0/24, separated by commas" />
        <Field label="Ed25519 public key (optional)" name="publicKey" value={publicKey} onChange={setPublicKey} description="Base64 or PEM; without one, the server makes an HMAC secret" />
        {codeField}
        <ErrorMessage error={error} />
        <Button type="submit">Create key</Button>
      </Form>
    </>
  );
}

function KillSwitch({ state, onChange }: { state: Data['killSwitch']; onChange: () => void }) {
  return (
    <>
      <p data-testid="kill-switch-state">
        {state.engaged
          ? `Engaged${state.engagedByOperators ? ' by the operators (only they can lift it)' : ''}${state.engagedByUser ? ' by you' : ''}: new orders are refused.`
          : 'Not engaged: you may trade.'}
      </p>
      {state.engagedByUser ? (
        <ActionButton action={() => request(LiftKillSwitchMutation)} onDone={onChange}>
          Lift my kill switch
        </ActionButton>
      ) : (
        <ActionButton action={() => request(EngageKillSwitchMutation)} onDone={onChange} className="danger">
          Stop all my trading now
        </ActionButton>
      )}
    </>
  );
}
