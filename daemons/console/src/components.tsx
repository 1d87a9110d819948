// Small pieces every page uses.
import { useCallback, useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { Button, Input, Label, ListBox, ListBoxItem, Popover, Select, SelectValue, Text, TextField } from 'react-aria-components';
import type { TadaDocumentNode } from 'gql.tada';
import { ApiError, request } from './api';
import { useSession } from './session';

/// An API error as the user should see it: what happened, its code, what to do.
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const api = error instanceof ApiError ? error : null;
  const message = error instanceof Error ? error.message : String(error);
  // Not a failure: the operator's part is done and the proposal waits for another's.
  if (api?.code === 'APPROVAL_PENDING') {
    return (
      <div role="status" className="pending">
        <p>{message}</p>
        <p className="hint">{api.hint}</p>
      </div>
    );
  }
  return (
    <div role="alert" className="error">
      <p>
        {message}
        {api?.code ? <code className="code">{api.code}</code> : null}
      </p>
      {api?.hint ? <p className="hint">{api.hint}</p> : null}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p role="status" aria-live="polite" className="loading">
      Loading {what}…
    </p>
  );
}

export function Panel({ title, children, id }: { title: string; children: ReactNode; id?: string }) {
  const heading = `${id ?? title.toLowerCase().replace(/\W+/g, '-')}-title`;
  return (
    // Focusable: a table wider than a phone scrolls inside it, by keyboard too.
    <section className="panel" aria-labelledby={heading} tabIndex={0}>
      <h2 id={heading}>{title}</h2>
      {children}
    </section>
  );
}

/// A labelled drop-down of `options` ([value, name] pairs), one chosen.
export function Choice<T extends string>({ label, options, value, onChange }: { label: string; options: [T, string][]; value: T; onChange: (value: T) => void }) {
  return (
    <Select selectedKey={value} onSelectionChange={(key) => onChange(key as T)}>
      <Label>{label}</Label>
      <Button>
        <SelectValue />
        <span aria-hidden="true"> ▾</span>
      </Button>
      <Popover>
        <ListBox>
          {options.map(([id, name]) => (
            <ListBoxItem key={id} id={id}>
              {name}
            </ListBoxItem>
          ))}
        </ListBox>
      </Popover>
    </Select>
  );
}

/// A query's answer, loaded when the page shows and again on `reload`;
/// with `refreshMs`, also every so often while the page shows (for figures
/// that move on the server, such as a perpetual market's mark).
export function useQuery<T, V extends Record<string, unknown>>(document: TadaDocumentNode<T, V>, variables?: V, { refreshMs }: { refreshMs?: number } = {}) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const key = JSON.stringify(variables ?? {});
  const reload = useCallback(() => {
    request(document, JSON.parse(key) as V).then(
      (answer) => {
        setData(answer);
        setError(null);
      },
      setError,
    );
  }, [document, key]);
  useEffect(reload, [reload]);
  useEffect(() => {
    if (!refreshMs) return;
    const timer = setInterval(() => {
      // A tab in the background asks nothing; it catches up when shown again.
      if (window.document.visibilityState !== 'hidden') reload();
    }, refreshMs);
    return () => clearInterval(timer);
  }, [reload, refreshMs]);
  return { data, error, reload };
}

/// A form's submit: runs `action` once at a time and keeps what it failed with.
export function useSubmit() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = (action: () => Promise<void>) => async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, submit };
}

/// A labelled text input.
export function Field({
  label,
  value,
  onChange,
  description,
  validate,
  ...props
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  description?: string;
  validate?: (value: string) => string | null;
  name?: string;
  type?: 'text' | 'password' | 'email' | 'search';
  isRequired?: boolean;
  autoComplete?: string;
  inputMode?: 'decimal' | 'numeric' | 'text';
}) {
  return (
    <TextField value={value} onChange={onChange} validate={validate} {...props}>
      <Label>{label}</Label>
      <Input />
      {description ? <Text slot="description">{description}</Text> : null}
    </TextField>
  );
}

/// A button that runs `action` once at a time: shows that it works, and its error.
export function ActionButton({
  action,
  children,
  label,
  className,
  onDone,
}: {
  action: () => Promise<unknown>;
  children: ReactNode;
  label?: string;
  className?: string;
  onDone?: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function run() {
    setBusy(true);
    setError(null);
    try {
      await action();
      onDone?.();
    } catch (failure) {
      setError(failure);
      // A proposal was made or approved: what the page shows has changed.
      if (failure instanceof ApiError && failure.code === 'APPROVAL_PENDING') onDone?.();
    } finally {
      setBusy(false);
    }
  }
  return (
    <span className="action">
      <Button onPress={run} isDisabled={busy} aria-label={label} className={className ? `react-aria-Button ${className}` : undefined}>
        {busy ? 'Working…' : children}
      </Button>
      <ErrorMessage error={error} />
    </span>
  );
}

/// A key for a request that must happen once however often it is sent
/// (a retry after a lost answer), from the browser's random source: it
/// works on plain HTTP too, where `crypto.randomUUID` does not.
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/// "PARTIALLY_FILLED" as "partially filled".
export function words(constant: string): string {
  return constant.toLowerCase().replace(/_/g, ' ');
}

export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <>—</>;
  return <time dateTime={at}>{new Date(at).toLocaleString()}</time>;
}

/// A two-factor code field, shown only to users who turned it on.
export function useTwoFactorCode(): [string | null, ReactNode] {
  const { me } = useSession();
  const [code, setCode] = useState('');
  if (!me?.twoFactorEnabled) return [null, null];
  return [
    code.trim(),
    <Field key="code" label="Two-factor code" name="twoFactorCode" isRequired autoComplete="one-time-code" inputMode="numeric" value={code} onChange={setCode} />,
  ];
}


/// A table's column headings: a name, or a name and "number" for a
/// right-aligned column; `actions` adds a last one for buttons, named for
/// screen readers only.
export function TableHead({ columns, actions = false }: { columns: (string | [string, 'number'])[]; actions?: boolean }) {
  return (
    <thead>
      <tr>
        {columns.map((column) => {
          const [name, kind] = typeof column === 'string' ? [column, undefined] : column;
          return (
            <th key={name} scope="col" className={kind}>
              {name}
            </th>
          );
        })}
        {actions ? (
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        ) : null}
      </tr>
    </thead>
  );
}
