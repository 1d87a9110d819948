// What the donations pages share: a campaign's progress towards its goal,
// the words for its model and state, and the links to a donor's PDFs
// (served by the gateway beside the console, never through it).
import { useState, type ReactNode } from 'react';
import { Button } from 'react-aria-components';
import { formatDecimal, formatPercent } from './decimal';

/// Whether a decimal string such as a campaign's progress is 1 or more (the goal met).
function atLeastOne(value: string): boolean {
  const whole = value.split('.')[0].replace(/^-/, '');
  return !value.startsWith('-') && /[1-9]/.test(whole);
}

/// How far a campaign is towards its goal: a progress bar whose value is
/// what was raised and whose maximum is the goal, both in the reference
/// asset and exact (the API's decimal strings); its width and percentage
/// moved from the API's `progress` as text, never through a float.
export function Progress({ raised, goal, progress, asset, label }: { raised: string; goal: string; progress: string; asset: string; label: string }) {
  const met = atLeastOne(progress);
  const percent = formatPercent(progress, 2);
  const text = `${formatDecimal(raised)} of ${formatDecimal(goal)} ${asset} raised (${percent})`;
  // Exact decimals in the ARIA values, as the API gives them (React's types want numbers).
  const values: Record<string, string> = { 'aria-valuemin': '0', 'aria-valuemax': goal, 'aria-valuenow': met ? goal : raised };
  return (
    <div className="campaign-progress">
      <div
        role="progressbar"
        aria-label={label}
        {...values}
        aria-valuetext={text}
        className="bar"
      >
        <span className="fill" style={{ width: met ? '100%' : percent }} />
      </div>
      <p className="progress-text" data-testid="progress-text">
        <strong>
          {formatDecimal(raised)} {asset}
        </strong>{' '}
        raised of {formatDecimal(goal)} {asset} ({percent})
      </p>
    </div>
  );
}

export const MODEL_WORDS: Record<'KEEP_WHAT_YOU_RAISE' | 'ALL_OR_NOTHING', string> = {
  KEEP_WHAT_YOU_RAISE: 'Keep what you raise: the organiser is paid what was given, goal met or not',
  ALL_OR_NOTHING: 'All or nothing: paid out only if the goal is met by the deadline, otherwise every gift goes back',
};

export const STATUS_WORDS: Record<'DRAFT' | 'ACTIVE' | 'ENDED' | 'PAID_OUT' | 'REFUNDED', string> = {
  DRAFT: 'draft (not published)',
  ACTIVE: 'taking gifts',
  ENDED: 'ended: waiting for its payout',
  PAID_OUT: 'paid out',
  REFUNDED: 'refunded',
};

export function statusOf(c: { status: keyof typeof STATUS_WORDS; cancelled: boolean }): string {
  if (c.cancelled) return 'cancelled: every gift went back';
  return STATUS_WORDS[c.status];
}

/// The PDF receipt of one of the caller's gifts, as the gateway serves it.
export function receiptHref(donationId: string): string {
  return `/donations/${encodeURIComponent(donationId)}/receipt.pdf`;
}

export function statementHref(year: number): string {
  return `/donations/statements/${year}.pdf`;
}

/// A button that asks before it acts: pressed, it says what will happen
/// and offers to go ahead or not.
export function Confirm({ label, question, children, confirm, danger = false }: { label: string; question: ReactNode; children: ReactNode; confirm: () => ReactNode; danger?: boolean }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <Button onPress={() => setAsking(true)} aria-label={label} className={danger ? 'react-aria-Button danger' : undefined}>
        {children}
      </Button>
    );
  }
  return (
    <div role="group" aria-label={label} className="confirm">
      <p>{question}</p>
      <div className="row-actions">
        {confirm()}
        <Button onPress={() => setAsking(false)}>Not now</Button>
      </div>
    </div>
  );
}

/// A local date and time input's value ("2026-05-01T12:30:15") `seconds` from now.
export function localDateTime(seconds: number): string {
  const at = new Date(Date.now() + seconds * 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}T${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
}
