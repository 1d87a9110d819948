import { expect, test, type Locator, type Page } from '@playwright/test';
import { OPERATOR, OPERATOR_PASSWORD, fitsTheWidth, signedIn, visit } from './helpers';

// Ivy, Jan and Kim hold 10,000 USD each (tests/browser.rs). The operators
// make Ivy an issuer and Jan and Kim verified investors from the console;
// Ivy tokenizes, offers, distributes and freezes from her pages; Jan and
// Kim subscribe, cancel, hold, vest and claim from theirs.

/// Half the supply, as the cap table shows a share (every digit the API gives).
const HALF = /^50\.0+%$/;
const DOCUMENT_HASH = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262';

async function findUser(ops: Page, email: string) {
  await ops.goto('/operator/users');
  await ops.getByRole('form', { name: 'Find a user' }).getByLabel('Email').fill(email);
  await ops.getByRole('button', { name: 'Find', exact: true }).click();
  await expect(ops.getByRole('region', { name: `User ${email}` })).toBeVisible();
}

/// Picks `option` in the drop-down labelled `label` inside `scope`.
async function choose(page: Page, scope: Locator, label: string, option: string) {
  await scope.getByRole('button', { name: new RegExp(`${label}$`) }).click();
  await page.getByRole('option', { name: option, exact: true }).click();
  await expect(scope.getByRole('button', { name: new RegExp(`${label}$`) })).toContainText(option);
}

async function fill(page: Page, form: string, fields: [string, string][]) {
  const scope = page.getByRole('form', { name: form });
  for (const [label, value] of fields) await scope.getByLabel(label, { exact: true }).fill(value);
  return scope;
}

test('an issuer tokenizes, offers, distributes and freezes; investors subscribe, cancel, vest and claim', async ({ browser }) => {
  test.setTimeout(180_000);
  const problems: string[] = [];
  const ops = await signedIn(browser, OPERATOR.email, problems, OPERATOR_PASSWORD, OPERATOR.secret);
  await findUser(ops, 'ivy@browser.example');
  await expect(ops.getByTestId('user-issuer')).toHaveText('no');
  await ops.getByRole('button', { name: 'Propose as an issuer' }).click();
  await expect(ops.getByTestId('user-issuer')).toHaveText('yes');
  for (const email of ['jan@browser.example', 'kim@browser.example']) {
    await findUser(ops, email);
    const claims = await fill(ops, 'Set investor claims', [['Country (ISO 3166-1 numeric)', '276']]);
    await claims.getByRole('button', { name: 'Propose claims' }).click();
    await expect(claims.getByRole('status')).toHaveText('Investor claims set.');
    await expect(ops.getByTestId('user-claims')).toContainText('country 276, retail');
  }
  await visit(ops, 'operator-investor');

  // The investors are signed in before the offering opens: it is short.
  const jan = await signedIn(browser, 'jan@browser.example', problems);
  const kim = await signedIn(browser, 'kim@browser.example', problems);

  // Ivy creates ACME and offers 1,000 at 10.00 USD for 30 seconds, cancellable for the first 20,
  // vesting in 2 tranches 10 seconds apart.
  const ivy = await signedIn(browser, 'ivy@browser.example', problems);
  await ivy.getByRole('link', { name: 'Issue' }).click();
  await expect(ivy.getByRole('heading', { name: 'Issue', level: 1 })).toBeVisible();
  const create = await fill(ivy, 'Create a token', [
    ['Symbol', 'ACME'],
    ['Maximum supply', '5000'],
    ['Offering document (https link)', 'https://acme.example/offering.pdf'],
    ["The document's blake3 hash (64 hex digits)", DOCUMENT_HASH],
  ]);
  await create.getByRole('button', { name: 'Create the token' }).click();
  await expect(create.getByRole('status')).toHaveText('Token ACME created.');
  const offer = await fill(ivy, 'Offer a token', [
    ['Price per token', '10'],
    ['Target (soft cap)', '100'],
    ['Hard cap', '1000'],
    ['Least per investor', '1'],
    ['Most per investor', '1000'],
    ['Open for (seconds)', '30'],
    ['Cancellable until (seconds before the end)', '10'],
    ['Vesting tranches (none: no vesting)', '2'],
    ['Seconds between tranches', '10'],
  ]);
  await choose(ivy, offer, 'Paid in', 'USD');
  await offer.getByRole('button', { name: 'Open the offering' }).click();
  await expect(offer.getByRole('status')).toContainText('of ACME is open.');
  await visit(ivy, 'issuer-offering');

  // Jan subscribes for 600; Kim for 400, cancels, and subscribes for 600: 1,200 asked of 1,000.
  for (const [investor, amounts] of [
    [jan, ['600']],
    [kim, ['400', '600']],
  ] as const) {
    await investor.getByRole('link', { name: 'Invest' }).click();
    await expect(investor.getByTestId('my-claims')).toContainText('Verified investor from 276');
    for (const amount of amounts) {
      const subscribe = await fill(investor, 'Subscribe', [['Amount (ACME)', amount]]);
      await subscribe.getByRole('button', { name: 'Subscribe' }).click();
      const held = amount === '600' ? '6,000.00' : '4,000.00';
      await expect(subscribe.getByRole('status')).toContainText(`Subscribed for ${amount} ACME: ${held} USD held in escrow`);
      if (investor === kim && amount === '400') {
        await kim.getByRole('button', { name: 'Cancel the subscription to ACME' }).click();
        await expect(kim.getByRole('table', { name: 'Your subscriptions' })).toContainText('cancelled');
      }
    }
  }
  await visit(kim, 'investor-subscriptions');
  await ivy.getByRole('button', { name: /^Subscriptions to offering/ }).click();
  await expect(ivy.getByRole('table', { name: /^Subscriptions to offering/ }).getByRole('row')).toHaveCount(4);

  // The ledger's clock closes it at its end: 500 each, pro rata; 1,000.00 USD of each hold refunded; all vesting.
  await expect(jan.getByRole('table', { name: 'Your subscriptions' })).toContainText('allocated', { timeout: 40_000 });
  const allocated = jan.getByRole('table', { name: 'Your subscriptions' }).getByRole('row').nth(1);
  await expect(allocated.getByRole('cell')).toHaveText(['ACME', '600', '6,000.00 USD', 'allocated', '500', '5,000.00', '1,000.00', '']);
  await jan.reload();
  await expect(jan.getByRole('table', { name: 'Vesting tranches' }).getByRole('row')).toHaveCount(3);
  await visit(jan, 'investor-portfolio-vesting');
  // Both tranches vest within twenty seconds; the tokens are then Jan's to hold.
  await expect(async () => {
    await jan.reload();
    await expect(jan.getByTestId('holding-ACME').getByRole('cell').nth(1)).toHaveText('500', { timeout: 1_000 });
  }).toPass({ timeout: 30_000 });
  await expect(jan.getByRole('table', { name: 'Vesting tranches' })).toHaveCount(0);

  // The cap table: half each.
  await ivy.reload();
  const table = ivy.getByRole('table', { name: 'Cap table of ACME' });
  await expect(table.getByTestId('holder-jan@browser.example').getByRole('cell')).toHaveText(['jan@browser.example', '500', '0', '0', HALF]);
  await expect(table.getByTestId('holder-kim@browser.example').getByRole('cell')).toHaveText(['kim@browser.example', '500', '0', '0', HALF]);

  // A dividend of 100.00 USD recorded in 2 seconds: 50.00 each, nothing withheld at their 0% rate.
  const distribute = await fill(ivy, 'Declare a distribution', [
    ['Pool', '100'],
    ['Record in (seconds)', '2'],
    ['Claimable for (seconds after the record)', '120'],
    ['Withholding without claims (%)', '30'],
  ]);
  await choose(ivy, distribute, 'Paid in', 'USD');
  await distribute.getByRole('button', { name: 'Declare the distribution' }).click();
  await expect(distribute.getByRole('status')).toContainText('declared');
  await expect(ivy.getByRole('table', { name: 'Your distributions' })).toContainText('recorded', { timeout: 20_000 });
  await visit(ivy, 'issuer-distribution');
  await jan.reload();
  const entitlement = jan.getByRole('table', { name: 'Your distributions' }).getByRole('row').nth(1);
  await expect(entitlement.getByRole('cell').nth(4)).toHaveText('50.00 USD');
  await jan.getByRole('button', { name: 'Claim the ACME distribution' }).click();
  await expect(entitlement.getByRole('cell').nth(6)).toHaveText('claimed');

  // Ivy freezes 100 of Jan's: a proposal, applied only when an operator approves it.
  const agent = ivy.getByRole('form', { name: 'Agent action' });
  await agent.getByLabel("Holder's email").fill('jan@browser.example');
  await agent.getByLabel('Amount (ACME)').fill('100');
  await agent.getByRole('button', { name: 'Propose' }).click();
  await expect(agent.getByRole('status')).toContainText('waits for 1 more approval');
  await expect(table.getByTestId('holder-jan@browser.example').getByRole('cell').nth(3)).toHaveText('0');
  await ops.goto('/operator/approvals');
  const proposal = ops.getByRole('region', { name: 'Proposals waiting for approval' }).getByRole('row', { name: /freeze 100 ACME of user \d+'s tokens/ });
  await proposal.getByRole('button', { name: /^Approve proposal/ }).click();
  await expect(ops.getByRole('region', { name: 'Recent proposals' }).getByRole('row', { name: /freeze 100 ACME/ }).getByTestId('proposal-status')).toHaveText('executed');
  await ivy.reload();
  await expect(table.getByTestId('holder-jan@browser.example').getByRole('cell')).toHaveText(['jan@browser.example', '500', '100', '100', HALF]);
  await visit(ivy, 'issuer-cap-table');
  // Jan still holds 500, of which 400 are free.
  await jan.reload();
  await expect(jan.getByTestId('holding-ACME').getByRole('cell').nth(1)).toHaveText('400');

  // Both sides' pages at a phone's width.
  for (const [page, path, heading] of [
    [ivy, '/issue', 'Cap table'],
    [jan, '/invest', 'Your portfolio'],
  ] as const) {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(path);
    await expect(page.getByRole('heading', { name: heading })).toBeVisible();
    await fitsTheWidth(page);
    await visit(page, `phone${path.replace('/', '-')}`);
  }
  expect(problems).toEqual([]);
});
