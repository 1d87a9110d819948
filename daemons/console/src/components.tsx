// Small pieces every page uses.
import type { ReactNode } from 'react';
import { Button, Label, ListBox, ListBoxItem, Popover, Select, SelectValue } from 'react-aria-components';
import { ApiError } from './api';

/// An API error as the user should see it: what happened, its code, what to do.
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const api = error instanceof ApiError ? error : null;
  const message = error instanceof Error ? error.message : String(error);
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
    <section className="panel" aria-labelledby={heading}>
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
