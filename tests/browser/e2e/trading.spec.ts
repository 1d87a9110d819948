import { expect, test, type Page } from '@playwright/test';
import { placeLimit, signedIn, visit, watch } from './helpers';

// Accounts tests/browser.rs made: Alice holds 2 BTC, Bob 100,000 USD.
/// A row of a price and a quantity, however many zeros the API pads them with.
function level(price: string, quantity: string): RegExp {
  const decimal = (text: string) => text.replace('.', '\\.') + (text.includes('.') ? '0*' : '(\\.0+)?');
  return new RegExp(`^${decimal(price)} ${decimal(quantity)}(\\s|$)`);
}

test('sign-in with a wrong password is refused and says what to do', async ({ page }) => {
  const problems: string[] = [];
  watch(page, problems);
  await page.goto('/signin');
  await visit(page, 'signin');
  await page.getByLabel('Email').fill('alice@browser.example');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('wrong email or password');
  await expect(alert).toContainText('UNAUTHENTICATED');
  await expect(alert).toContainText('Check the email and password');
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
  await visit(page, 'signin-refused');
  expect(problems).toEqual([]);
});

test('two traders cross on BTC-USD and each sees the book, the trade and the balances change live', async ({ browser }) => {
  const problems: string[] = [];
  const alice = await signedIn(browser, 'alice@browser.example', problems);
  const bob = await signedIn(browser, 'bob@browser.example', problems);

  await alice.goto('/');
  await expect(alice.getByRole('link', { name: 'BTC-USD' })).toBeVisible();
  await visit(alice, 'markets');
  await alice.getByRole('link', { name: 'BTC-USD' }).click();
  await bob.goto('/trade/BTC-USD');
  const aliceBalances = alice.getByRole('table', { name: 'Balances' });
  const bobBalances = bob.getByRole('table', { name: 'Balances' });
  await expect(aliceBalances.locator('tr[data-asset="BTC"]')).toContainText('2.00000000');
  await expect(bobBalances.locator('tr[data-asset="USD"]')).toContainText('100,000.00');

  // Alice asks 0.5 BTC at 30,000: Bob's book shows it live, and her bitcoin is locked.
  await placeLimit(alice, 'Sell', '30000', '0.5');
  const bobAsks = bob.getByRole('table', { name: 'Asks' });
  await expect(bobAsks.getByRole('row', { name: level('30000', '0.5') })).toBeVisible();
  await expect(aliceBalances.locator('tr[data-asset="BTC"]')).toContainText('1.50000000');
  await expect(aliceBalances.locator('tr[data-asset="BTC"] td').nth(1)).toHaveText('0.50000000');
  await visit(alice, 'market-with-an-ask');

  // Bob buys 0.2 at that price: both see the trade, the book and their balances change.
  await placeLimit(bob, 'Buy', '30000', '0.2');
  for (const page of [alice, bob]) {
    const trades = page.getByRole('table', { name: 'Latest trades' });
    await expect(trades.getByRole('row', { name: level('30000', '0.2') })).toBeVisible();
    await expect(page.getByRole('table', { name: 'Asks' }).getByRole('row', { name: level('30000', '0.3') })).toBeVisible();
    await expect(page.getByTestId('last-price')).toHaveText(/^30,000(\.0+)?$/);
  }
  // Bob paid 6,000 and 0.2% taker fee (12); Alice got 6,000 less 0.1% maker fee (6).
  await expect(bobBalances.locator('tr[data-asset="USD"]')).toContainText('93,988.00');
  await expect(bobBalances.locator('tr[data-asset="BTC"]')).toContainText('0.20000000');
  await expect(aliceBalances.locator('tr[data-asset="USD"]')).toContainText('5,994.00');
  await expect(aliceBalances.locator('tr[data-asset="BTC"] td').nth(1)).toHaveText('0.30000000');
  await visit(bob, 'market-after-a-trade');

  // Each sees their own fill, with its fee.
  const fill = (page: Page) => page.getByRole('table', { name: 'Your fills' }).getByRole('row').nth(1).locator('td');
  await expect(fill(bob)).toHaveText([/./, 'Buy', /^30000(\.0+)?$/, /^0\.20*$/, '12.00 USD']);
  await expect(fill(alice)).toHaveText([/./, 'Sell', /^30000(\.0+)?$/, /^0\.20*$/, '6.00 USD']);

  // Alice amends the rest of her ask to 30,500: Bob's book moves with it.
  const aliceOpen = alice.getByRole('table', { name: 'Open orders' });
  await aliceOpen.getByRole('button', { name: /Amend order/ }).click();
  const amend = alice.getByRole('form', { name: /Amend order/ });
  await amend.getByLabel('Price (USD)').fill('30500');
  await amend.getByRole('button', { name: 'Save' }).click();
  await expect(bob.getByRole('table', { name: 'Asks' }).getByRole('row', { name: level('30500', '0.3') })).toBeVisible();
  await expect(bob.getByRole('table', { name: 'Asks' }).getByRole('row', { name: /^30000/ })).toHaveCount(0);
  await expect(aliceOpen).toContainText('30500');

  // Alice cancels the rest: it leaves both books and her bitcoin is free again.
  await aliceOpen.getByRole('button', { name: /Cancel order/ }).click();
  await expect(alice.getByText('No open orders.')).toBeVisible();
  await expect(bob.getByRole('table', { name: 'Asks' }).getByRole('row', { name: /^30500/ })).toHaveCount(0);
  await expect(aliceBalances.locator('tr[data-asset="BTC"] td').nth(0)).toHaveText('1.80000000');
  await expect(aliceBalances.locator('tr[data-asset="BTC"] td').nth(1)).toHaveText('0.00000000');
  await visit(alice, 'market-after-a-cancel');

  await alice.goto('/wallet');
  await expect(alice.getByRole('table', { name: 'Ledger history' })).toBeVisible();
  await visit(alice, 'wallet');
  expect(problems).toEqual([]);
});
