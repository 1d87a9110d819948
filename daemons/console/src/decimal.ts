// Money and quantities stay decimal strings from the API to the screen:
// these only pad, group and check them, as text, never through a float.

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;

/// `value` with exactly `scale` fraction digits (padded; extra digits, which
/// the API never sends for an amount at its asset's scale, are kept).
export function formatDecimal(value: string | null | undefined, scale?: number): string {
  if (value == null) return '—';
  const negative = value.startsWith('-');
  const match = DECIMAL.exec(negative ? value.slice(1) : value);
  if (!match) return value;
  const whole = match[1].replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  let fraction = match[2] ?? '';
  if (scale !== undefined && fraction.length < scale) fraction = fraction.padEnd(scale, '0');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/// Whether `text` is a positive decimal with at most `scale` fraction digits.
export function isDecimal(text: string, scale?: number): boolean {
  const match = DECIMAL.exec(text.trim());
  if (!match) return false;
  if (scale !== undefined && (match[2]?.length ?? 0) > scale) return false;
  return /[1-9]/.test(text);
}

/// Fraction digits of a step such as a tick size ("0.01" → 2).
export function digitsOf(step: string): number {
  const dot = step.indexOf('.');
  return dot < 0 ? 0 : step.length - dot - 1;
}

/// A rate as a percentage, by moving the decimal point ("0.0001" →
/// "0.0100%"): at least `digits` fraction digits, none dropped.
export function formatPercent(rate: string | null | undefined, digits = 4): string {
  if (rate == null) return '—';
  const negative = rate.startsWith('-');
  const match = DECIMAL.exec(negative ? rate.slice(1) : rate);
  if (!match) return rate;
  const fraction = (match[2] ?? '').padEnd(2, '0');
  const whole = `${match[1]}${fraction.slice(0, 2)}`.replace(/^0+(?=\d)/, '');
  const rest = fraction.slice(2).padEnd(digits, '0');
  const zero = /^0*$/.test(whole + rest);
  return `${negative && !zero ? '-' : ''}${whole}${rest ? `.${rest}` : ''}%`;
}
