import { expect, test } from '@playwright/test';
import { APPROVER, OPERATOR, OPERATOR_PASSWORD, fitsTheWidth, signIn, signOut, signedIn, visit } from './helpers';

// Dave holds 1 BTC (tests/browser.rs). A withdrawal needs two operators,
// and operators sign in with two-factor codes, as shipped.
const ADDRESS = 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4';

test('a withdrawal to the address book, requested by a trader and approved by two operators', async ({ browser }) => {
  const problems: string[] = [];
  const dave = await signedIn(browser, 'dave@browser.example', problems);
  await dave.getByRole('link', { name: 'Withdrawals' }).click();
  await expect(dave.getByRole('heading', { name: 'Withdrawals', level: 1 })).toBeVisible();
  await expect(dave.getByTestId('withdrawable')).toHaveText('1.00000000');
  // Limit, used, remaining over the last 24 hours (in BTC, the site's reference asset here).
  const today = dave.getByRole('table', { name: 'Withdrawal limits' }).getByRole('row', { name: /24 hours/ }).locator('td');
  await expect(today).toHaveText([/^10(\.0+)?$/, /^0(\.0+)?$/, /^10(\.0+)?$/]);

  // A mistyped address is refused for its network, and nothing is added.
  const add = dave.getByRole('form', { name: 'Add an address' });
  await add.getByLabel('Network').fill('bitcoin');
  await add.getByLabel('Address').fill(ADDRESS.slice(0, -1) + '5');
  await add.getByLabel('Label').fill('cold wallet');
  await add.getByRole('button', { name: 'Add address' }).click();
  await expect(add.getByRole('alert')).toContainText('not a bitcoin address');
  await expect(dave.getByText('No addresses yet.')).toBeVisible();

  // The right one is added, usable after its cooldown.
  await add.getByLabel('Address').fill(ADDRESS);
  await add.getByRole('button', { name: 'Add address' }).click();
  const entry = dave.getByRole('table', { name: 'Address book' }).getByRole('row', { name: /cold wallet/ });
  await expect(entry).toContainText(ADDRESS);
  await visit(dave, 'withdrawals-address-added');
  await expect(async () => {
    await dave.reload();
    await expect(entry).toContainText('yes', { timeout: 500 });
  }).toPass({ timeout: 15_000 });

  const form = dave.getByRole('form', { name: 'Request a withdrawal' });
  await form.getByLabel('Amount (BTC)').fill('0.25');
  await form.getByRole('button', { name: /To$/ }).click();
  await dave.getByRole('option', { name: /cold wallet/ }).click();
  await form.getByRole('button', { name: 'Request withdrawal' }).click();
  const said = form.getByRole('status');
  await expect(said).toContainText(/Withdrawal \d+ is pending/);
  const id = /Withdrawal (\d+)/.exec((await said.textContent()) ?? '')?.[1] ?? '';
  const mine = dave.getByRole('table', { name: 'Withdrawals' }).locator(`tr[data-withdrawal-id="${id}"]`);
  await expect(mine.getByTestId('withdrawal-status')).toHaveText('pending');
  await expect(mine).toContainText(ADDRESS);
  await expect(dave.getByTestId('withdrawable')).toHaveText('0.75000000');
  // Counted against the day's limit at once.
  await expect(today).toHaveText([/^10(\.0+)?$/, /^0\.250*$/, /^9\.750*$/]);
  await visit(dave, 'withdrawals-requested');

  // A third browser: the operator signs in with a code and approves it…
  const ops = await signedIn(browser, OPERATOR.email, problems, OPERATOR_PASSWORD, OPERATOR.secret);
  await ops.getByRole('link', { name: 'Operators' }).click();
  await expect(ops.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
  await expect(ops.getByTestId('pending-withdrawals')).not.toHaveText('0');
  await expect(ops.getByTestId('ledger-state')).toContainText('reachable');
  await expect(ops.getByTestId('matching-state')).toContainText('linked to the ledger');
  await expect(ops.getByRole('table', { name: 'Reserves' }).locator('tr[data-asset="BTC"]').getByTestId('balanced')).toHaveText('✓ balanced');
  await visit(ops, 'operator-dashboard');
  await ops.getByRole('navigation', { name: 'Operators' }).getByRole('link', { name: 'Approvals' }).click();
  const queue = ops.getByRole('region', { name: 'Withdrawals to decide' });
  await queue.getByRole('button', { name: `Approve withdrawal ${id}` }).click();
  await expect(queue.getByRole('status')).toContainText('waits for 1 more approval');
  // The queue shows the proposal the approval made, approved once, for another operator.
  const made = ops.getByRole('region', { name: 'Proposals waiting for approval' }).getByRole('row', { name: new RegExp(`approve withdrawal ${id}\\b`) });
  await expect(made).toContainText('1 of 2');
  await expect(made).toContainText('You approved it');
  await visit(ops, 'operator-approvals');
  // …which is not enough: one operator alone pays nothing out.
  await dave.reload();
  await expect(mine.getByTestId('withdrawal-status')).toHaveText('pending');

  // The second operator, in the same browser after the first signs out, approves the proposal.
  await signOut(ops);
  await signIn(ops, APPROVER.email, OPERATOR_PASSWORD, APPROVER.secret);
  await ops.goto('/operator/approvals');
  const proposal = ops.getByRole('region', { name: 'Proposals waiting for approval' }).getByRole('row', { name: new RegExp(`approve withdrawal ${id}\\b`) });
  await expect(proposal).toContainText('1 of 2');
  await proposal.getByRole('button', { name: /^Approve proposal/ }).click();
  await expect(proposal).toHaveCount(0);
  await expect(ops.getByRole('region', { name: 'Withdrawals to decide' }).locator(`tr[data-withdrawal-id="${id}"]`)).toHaveCount(0);
  await expect(ops.getByRole('region', { name: 'Recent proposals' }).getByRole('row', { name: new RegExp(`approve withdrawal ${id}\\b`) }).getByTestId('proposal-status')).toHaveText('executed');

  // Dave sees it approved, and the bitcoin gone from his balance, locked included.
  await dave.reload();
  await expect(mine.getByTestId('withdrawal-status')).toHaveText('approved');
  await dave.goto('/wallet');
  await expect(dave.getByRole('table', { name: 'Balances' }).locator('tr[data-asset="BTC"]')).toContainText('0.75000000');
  await expect(dave.getByRole('table', { name: 'Balances' }).locator('tr[data-asset="BTC"] td').nth(1)).toHaveText('0.00000000');

  // The books still balance, and the audit log's chain holds with both approvals in it.
  await ops.goto('/operator');
  for (const asset of ['BTC', 'USD']) {
    await expect(ops.getByRole('table', { name: 'Reserves' }).locator(`tr[data-asset="${asset}"]`).getByTestId('balanced')).toHaveText('✓ balanced');
  }
  await ops.goto('/operator/audit');
  await expect(ops.getByRole('table', { name: 'Audit records' })).toContainText(`approved proposal`);
  await ops.getByRole('button', { name: 'Check the chain' }).click();
  await expect(ops.getByTestId('chain-result')).toContainText('✓ Verified: records 1 to');
  await visit(ops, 'operator-audit');

  await ops.goto('/operator/users');
  await ops.getByLabel('Email').fill('dave@browser.example');
  await ops.getByRole('button', { name: 'Find' }).click();
  await expect(ops.getByTestId('user-tier')).toHaveText('0');
  await expect(ops.getByTestId('user-frozen')).toHaveText('active');
  await visit(ops, 'operator-users');
  await ops.goto('/operator/markets');
  await expect(ops.getByRole('table', { name: 'Markets' })).toContainText('BTC-USD');
  await visit(ops, 'operator-markets');

  // The operators' pages at a phone's width, in the dark theme chosen with the toggle.
  await ops.setViewportSize({ width: 390, height: 844 });
  await ops.getByRole('button', { name: 'Switch to the dark theme' }).click();
  await expect(ops.locator('html')).toHaveAttribute('data-theme', 'dark');
  for (const [path, heading] of [
    ['/operator', 'Reserves'],
    ['/operator/approvals', 'Recent proposals'],
    ['/operator/users', 'Find a user'],
    ['/operator/markets', 'House inventory'],
    ['/operator/audit', 'Records'],
  ]) {
    await ops.goto(path);
    await expect(ops.getByRole('heading', { name: heading })).toBeVisible();
    await fitsTheWidth(ops);
    await visit(ops, `phone-dark-${path.slice(1).replace('/', '-')}`);
  }
  expect(problems).toEqual([]);
});

test('a trader is not offered the operator pages', async ({ browser }) => {
  const problems: string[] = [];
  const dave = await signedIn(browser, 'dave@browser.example', problems);
  await expect(dave.getByRole('link', { name: 'Operators' })).toHaveCount(0);
  await dave.goto('/operator');
  await expect(dave.getByText('These pages are for operators.')).toBeVisible();
  expect(problems).toEqual([]);
});
