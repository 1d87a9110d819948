import { expect, test } from '@playwright/test';
import { listBtcUsdAndFundTheHouse, OPERATOR, OPERATOR_PASSWORD, signedIn, visit } from './helpers';

// Erin holds 1,000 USD (tests/browser.rs). The operator lists BTC/USD for
// conversion at a set price and funds the house's bitcoin from the console.

test('a trader converts dollars to bitcoin at a firm quote, counted down, and the operators see the position', async ({ browser }) => {
  const problems: string[] = [];
  const ops = await signedIn(browser, OPERATOR.email, problems, OPERATOR_PASSWORD, OPERATOR.secret);
  await listBtcUsdAndFundTheHouse(ops, 'BTC', '1', 'browser-convert-inventory');
  await expect(ops.getByRole('form', { name: 'Fund the house' }).getByRole('status')).toContainText('The house now holds 1');

  const erin = await signedIn(browser, 'erin@browser.example', problems);
  await erin.getByRole('link', { name: 'Convert' }).click();
  await expect(erin.getByRole('heading', { name: 'Convert', level: 1 })).toBeVisible();
  const form = erin.getByRole('form', { name: 'Ask for a quote' });
  await form.getByRole('button', { name: /From$/ }).click();
  await erin.getByRole('option', { name: 'USD' }).click();
  await expect(form.getByRole('button', { name: /To$/ })).toContainText('BTC');
  await expect(erin.getByTestId('convertible')).toHaveText('1,000.00');
  await form.getByLabel('Amount (USD)').fill('500');
  await form.getByRole('button', { name: 'Get a quote' }).click();

  // 500 USD at 50,000 less 0.5% is 0.00995 BTC; the 0.1% fee leaves 0.00994005.
  const quote = erin.getByRole('form', { name: 'The quote' });
  await expect(quote.getByTestId('quote-from')).toHaveText('500.00 USD');
  await expect(quote.getByTestId('quote-to')).toHaveText('0.00994005 BTC');
  const countdown = quote.getByRole('timer');
  const secondsLeft = async () => Number(/(\d+) more second/.exec((await countdown.textContent()) ?? '')?.[1] ?? NaN);
  const first = await secondsLeft();
  expect(first).toBeGreaterThan(5);
  expect(first).toBeLessThanOrEqual(10);
  // It counts down.
  await expect.poll(secondsLeft, { timeout: 5_000 }).toBeLessThan(first);
  await visit(erin, 'convert-quote');
  await quote.getByRole('button', { name: 'Accept' }).click();
  await expect(erin.getByRole('status').filter({ hasText: 'Converted' })).toHaveText('Converted 500.00 USD into 0.00994005 BTC.');
  await expect(erin.getByTestId('convertible')).toHaveText('500.00');
  const history = erin.getByRole('table', { name: 'Your conversions' });
  await expect(history.getByRole('row')).toHaveCount(2);
  await expect(history).toContainText('0.00994005 BTC');

  // A quote left alone expires: the page says so and offers a new one instead of accepting.
  await form.getByLabel('Amount (USD)').fill('100');
  await form.getByRole('button', { name: 'Get a quote' }).click();
  await expect(quote.getByTestId('quote-from')).toHaveText('100.00 USD');
  await expect(quote.getByRole('timer')).toHaveText('This quote has expired.', { timeout: 15_000 });
  await expect(quote.getByRole('button', { name: 'Accept' })).toHaveCount(0);
  await visit(erin, 'convert-expired');
  await quote.getByRole('button', { name: 'Ask again' }).click();
  await expect(quote.getByRole('timer')).toContainText('more second');
  await expect(history.getByRole('row')).toHaveCount(2);

  // The operators see the house's position through the pair: 0.01 BTC out, 500 USD in.
  await ops.reload();
  const pair = ops.getByRole('table', { name: 'Convert pairs' }).getByRole('row', { name: /BTC\/USD/ });
  await expect(pair).toContainText(/-0\.01\d* BTC, 500(\.0+)? USD/);
  await visit(ops, 'operator-convert');
  expect(problems).toEqual([]);
});
