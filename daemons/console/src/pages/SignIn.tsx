import { useState, type FormEvent } from 'react';
import { Button, Form, Input, Label, TextField } from 'react-aria-components';
import { Link, useLocation } from 'wouter';
import { ApiError, request } from '../api';
import { ErrorMessage } from '../components';
import { graphql } from '../graphql';
import { useSession } from '../session';

const LoginMutation = graphql(`
  mutation Login($email: String!, $password: String!, $twoFactorCode: String) {
    login(email: $email, password: $password, twoFactorCode: $twoFactorCode) { expiresAt user { id } }
  }
`);

const RegisterMutation = graphql(`
  mutation Register($email: String!, $password: String!) {
    register(email: $email, password: $password) { id }
  }
`);

/// Sign in, or sign up and then sign in. The gateway sets the session's
/// HttpOnly cookie; the token in its answer is not kept.
export function SignIn({ signUp }: { signUp: boolean }) {
  const { refresh } = useSession();
  const [, navigate] = useLocation();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needsCode, setNeedsCode] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (signUp) await request(RegisterMutation, { email, password });
      await request(LoginMutation, { email, password, twoFactorCode: needsCode ? code : null });
      await refresh();
      navigate('/');
    } catch (failure) {
      if (failure instanceof ApiError && failure.code === 'TWO_FACTOR_REQUIRED') setNeedsCode(true);
      // Here UNAUTHENTICATED is the credentials, not an ended session.
      const wrong = failure instanceof ApiError && failure.code === 'UNAUTHENTICATED';
      setError(wrong ? new ApiError(failure.message, failure.code, 'Check the email and password and try again.') : failure);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="narrow">
      <h1>{signUp ? 'Create an account' : 'Sign in'}</h1>
      <Form onSubmit={submit} aria-label={signUp ? 'Create an account' : 'Sign in'}>
        <TextField name="email" type="email" isRequired autoComplete="email" value={email} onChange={setEmail}>
          <Label>Email</Label>
          <Input />
        </TextField>
        <TextField name="password" type="password" isRequired autoComplete={signUp ? 'new-password' : 'current-password'} value={password} onChange={setPassword}>
          <Label>Password</Label>
          <Input />
        </TextField>
        {needsCode ? (
          <TextField name="code" isRequired autoComplete="one-time-code" inputMode="numeric" value={code} onChange={setCode}>
            <Label>Two-factor code</Label>
            <Input />
          </TextField>
        ) : null}
        <ErrorMessage error={error} />
        <Button type="submit" isDisabled={busy} className="primary">
          {busy ? 'Working…' : signUp ? 'Create account' : 'Sign in'}
        </Button>
      </Form>
      <p>{signUp ? <Link href="/signin">I have an account: sign in</Link> : <Link href="/signup">New here? Create an account</Link>}</p>
    </main>
  );
}
