// What every spec uses: the accounts tests/browser.rs made, screenshots with
// axe's verdict, a watch for CSP violations and page errors, sign-in, and
// an authenticator app's codes.
import AxeBuilder from '@axe-core/playwright';
import { expect, type Browser, type Page } from '@playwright/test';
import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PASSWORD = process.env.TRADER_PASSWORD ?? '';
export const OPERATOR = { email: process.env.OPERATOR_EMAIL ?? '', secret: process.env.OPERATOR_TOTP_SECRET ?? '' };
export const APPROVER = { email: process.env.APPROVER_EMAIL ?? '', secret: process.env.APPROVER_TOTP_SECRET ?? '' };
export const OPERATOR_PASSWORD = process.env.OPERATOR_PASSWORD ?? '';
const SCREENSHOTS = process.env.SCREENSHOT_DIR ?? 'test-results/screenshots';
mkdirSync(SCREENSHOTS, { recursive: true });

/// A screenshot of the page as it is, and axe's verdict on it: no serious
/// or critical violation of WCAG 2.1 A and AA.
export async function visit(page: Page, name: string) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const axe = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  const serious = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`), `axe on ${name}`).toEqual([]);
}

/// Nothing wider than the screen: tables scroll inside their panels.
export async function fitsTheWidth(page: Page) {
  const [scroll, width, widest] = await page.evaluate(() => {
    // The outermost element past the right edge, to say what to fix.
    const clipped = (e: Element) => {
      for (let a = e.parentElement; a; a = a.parentElement) if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true;
      return false;
    };
    const past = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5 && !clipped(e));
    const outer = past.find((e) => !past.includes(e.parentElement as Element));
    const name = outer ? `${outer.tagName.toLowerCase()}.${outer.className} "${(outer.textContent ?? '').slice(0, 40)}"` : 'none';
    return [document.documentElement.scrollWidth, window.innerWidth, name] as const;
  });
  expect(scroll, `${page.url()} scrolls sideways; the widest: ${widest}`).toBeLessThanOrEqual(width);
}

/// Fails the test on any Content-Security-Policy violation or page error.
export function watch(page: Page, problems: string[]) {
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
}

/// A new browser context (its own cookies) signed in as `email`.
export async function signedIn(browser: Browser, email: string, problems: string[], password = PASSWORD, secret?: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, problems);
  await signIn(page, email, password, secret);
  return page;
}

/// Signs in on this page; with `secret`, answers the two-factor question with the app's code.
export async function signIn(page: Page, email: string, password = PASSWORD, secret?: string) {
  await page.goto('/signin');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (secret) {
    await expect(page.getByRole('alert')).toContainText('TWO_FACTOR_REQUIRED');
    await page.getByLabel('Two-factor code').fill(totp(secret, (await unspentStep(secret)) * TOTP_STEP_MS));
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await expect(page.getByTestId('signed-in-as')).toHaveText(email);
}

export async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
}

const TOTP_STEP_MS = 30_000;
/// The last step whose code each secret spent in this run, kept in a file
/// beside the screenshots: a retry runs in a new worker process, which must
/// not send again a code the failed attempt spent.
const SPENT_STEPS = join(SCREENSHOTS, '..', 'totp-spent-steps.json');
const spentSteps = {
  read(): Record<string, number> {
    try {
      return JSON.parse(readFileSync(SPENT_STEPS, 'utf8')) as Record<string, number>;
    } catch {
      return {};
    }
  },
  get(secret: string): number | undefined {
    return this.read()[secret];
  },
  set(secret: string, step: number) {
    writeFileSync(SPENT_STEPS, JSON.stringify({ ...this.read(), [secret]: step }));
  },
};

/// A step whose code the gateway still takes (one step of skew each way)
/// and that is after every step this secret spent: each code is good once,
/// so two sign-ins in one 30-second step need two steps' codes. The first
/// takes the next step's code, as this step's may have been spent enrolling
/// moments ago; a later one takes the step after the last spent, waiting
/// for the clock when that is beyond the skew.
async function unspentStep(secret: string): Promise<number> {
  const nowStep = () => Math.floor(Date.now() / TOTP_STEP_MS);
  const spent = spentSteps.get(secret);
  const step = spent === undefined ? nowStep() + 1 : Math.max(nowStep(), spent + 1);
  while (step > nowStep() + 1) await new Promise((resolve) => setTimeout(resolve, 250));
  spentSteps.set(secret, step);
  return step;
}

/// What an authenticator app shows now for a base32 secret (RFC 6238:
/// HMAC-SHA1, 30-second steps, six digits).
export function totp(secret: string, at_ms = Date.now()): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of secret.replace(/=+$/, '').toUpperCase()) {
    const value = alphabet.indexOf(char);
    if (value < 0) throw new Error(`not base32: ${secret}`);
    bits += value.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g)?.map((byte) => parseInt(byte, 2)) ?? []);
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at_ms / 30_000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return code.toString().padStart(6, '0');
}

/// Fills a BTC limit order into a market page's order form and sends it,
/// without waiting for the answer (a refusal is an alert, not a status).
export async function sendLimit(page: Page, side: 'Buy' | 'Sell', price: string, quantity: string) {
  const form = page.getByRole('form', { name: 'Place an order' });
  // A person clicks the radio's label: its input is visually hidden, as React Aria draws it.
  await form.getByRole('radiogroup', { name: 'Side' }).getByText(side, { exact: true }).click();
  await expect(form.getByRole('radio', { name: side })).toBeChecked();
  await form.getByLabel('Price (USD)').fill(price);
  await form.getByLabel('Quantity (BTC)').fill(quantity);
  await form.getByRole('button', { name: `${side} BTC` }).click();
}

/// Places a BTC limit order from a market page's order form and waits for its confirmation.
export async function placeLimit(page: Page, side: 'Buy' | 'Sell', price: string, quantity: string) {
  await sendLimit(page, side, price, quantity);
  await expect(page.getByRole('form', { name: 'Place an order' }).getByRole('status')).toContainText('Order');
}

/// Ticks or clears the order form's "Reduce only" box (a perpetual market's), by its label as a person does.
export async function setReduceOnly(page: Page, on: boolean) {
  const form = page.getByRole('form', { name: 'Place an order' });
  const box = form.getByRole('checkbox', { name: 'Reduce only' });
  if ((await box.isChecked()) !== on) await form.getByText('Reduce only', { exact: true }).click();
  await expect(box).toBeChecked({ checked: on });
}

/// On the operators' markets page: lists BTC/USD for conversion at 50,000
/// USD a bitcoin, a 50 bps spread and a 10 bps fee, and funds the house
/// with `amount` of `asset` under `reference` (what it then holds is
/// the caller's to check: another spec may have funded it too).
export async function listBtcUsdAndFundTheHouse(ops: Page, asset: string, amount: string, reference: string) {
  await ops.goto('/operator/markets');
  const setPair = ops.getByRole('form', { name: 'Set pair' });
  for (const [label, value] of [
    ['Base asset', 'BTC'],
    ['Quote asset', 'USD'],
    ['Price (quote per base)', '50000'],
    ['Spread (bps)', '50'],
    ['Fee (bps)', '10'],
    ['Minimum (base)', '0.0001'],
    ['Maximum (base)', '10'],
    ['Step (base)', '0.00000001'],
    ['Exposure limit (base)', '10'],
    ['Exposure limit (quote)', '1000000'],
  ]) {
    await setPair.getByLabel(label, { exact: true }).fill(value);
  }
  await setPair.getByRole('button', { name: 'Set pair' }).click();
  await expect(setPair.getByRole('status')).toHaveText('Pair BTC/USD set.');
  const fund = ops.getByRole('form', { name: 'Fund the house' });
  await fund.getByLabel('Asset').fill(asset);
  await fund.getByLabel('Amount').fill(amount);
  await fund.getByLabel('Reference').fill(reference);
  await fund.getByRole('button', { name: 'Fund the house' }).click();
  await expect(fund.getByRole('status')).toContainText('The house now holds');
}
