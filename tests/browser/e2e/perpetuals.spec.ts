import { expect, test, type Page } from '@playwright/test';
import { OPERATOR, OPERATOR_PASSWORD, fitsTheWidth, placeLimit, sendLimit, setReduceOnly, signedIn, visit } from './helpers';

// Accounts tests/browser.rs made: Frank holds 300 USD, Gina 1,000 USD,
// Oscar nothing (he only prices the market). The operator lists
// BTC-USD-PERP from the console (`market = 1` approval in browser.rs: the
// operator's own is enough) and names Oscar its oracle.
//
// The market: a tick of 0.1 USD, a lot of 0.001 BTC, maker 0.02%, taker
// 0.05%, one bracket to 1,000,000 USD at 10% initial (10x at most) and 5%
// maintenance, no interest and funding every 8 hours: with no interest
// and a book too thin for the impact notional (5,000 USD) the funding
// rate is 0 and the mark is the median of the index, the index and the
// last trade, so the figures below do not move unless a test step moves them.
//
// Frank (cross, the default 10x) bids 0.01 BTC at 50,000; Gina (isolated,
// 5x) sells into it. At the mark of 50,000 the notional is 500 USD:
// - Frank's margin is 10% of 500 = 50.00, moved from his 300; his 0.02%
//   maker fee (0.10) is paid from his general account: 249.90 left there.
//   Maintenance is 5% of 500 = 25.00. In cross margin his equity is his
//   general and margin accounts, 299.90; at a price p it is
//   299.90 + 0.01 (p - 50,000) and he is liquidated below 5% of 0.01 p:
//   0.0095 p < 200.10, p < 21,063.157…: the highest tick below, 21,063.1.
// - Gina's margin is 20% (5x) of 500 = 100.00 less her 0.05% taker fee
//   (0.25), which an isolated position pays from its margin: 99.75.
//   Liquidated when 99.75 + 0.01 (50,000 - p) < 0.0005 p:
//   599.75 < 0.0105 p, p > 57,119.047…: the lowest tick above, 57,119.1.
// Oscar moves the price to 51,000: the mark follows (the median of 51,000,
// 51,000 and the last trade 50,000), 0.01 x 1,000 = 10.00 moves from
// Gina's margin to Frank's: 60.00 and 89.75; the notional is 510, its 5%
// maintenance 25.50. Both equities move with the price, so neither
// liquidation price moves.
// Frank lowers his leverage to 5x: his margin must be 20% of 510 = 102.00
// (42.00 more from his general account); his cross equity is the same
// 309.90, and so is his liquidation price.
// Gina can take back nothing (she needs 20% of 510 = 102.00 and has 89.75):
// INSUFFICIENT_FUNDS. She adds 20: 109.75, liquidated when
// 109.75 + 0.01 (51,000 - p) < 0.0005 p: 619.75 < 0.0105 p,
// p > 59,023.809…: 59,023.9. She then takes back 7.75, all that is free
// (109.75 - 102.00): 102.00, 612 < 0.0105 p, p > 58,285.714…: 58,285.8.
//
// Then both close, at 50,000, the price they opened at: over each
// position's life the price moved nothing, so each ends with what it
// deposited less its fees, whatever the marks moved between their margins
// meanwhile. Oscar prices 51,000 again first (the index is stale 60 s
// after his last price); the mark stays 51,000.
// - Frank's reduce-only buy would grow his long: refused (BAD_USER_INPUT).
//   His general account stays 249.90 - 42.00 = 207.90.
// - His reduce-only sell of 0.004 at 50,000 rests; Gina's reduce-only buy
//   takes it. Notional 200: his maker fee 0.04, her taker fee 0.10. Left:
//   0.006 BTC each way, at the mark a notional of 306, maintenance 15.30,
//   unrealized 0.006 x 1,000 = 6.00 (his gain, her loss).
// - He closes at a limit of 50,000: a reduce-only sell of his 0.006 that
//   rests. She closes at the market from the Perpetuals page: a buy no
//   higher than the mark plus her initial margin rate (1/5 of 51,000 is
//   10,200, more than the 10% cap: 51,000 + 5,100 = 56,100); it takes his
//   offer at 50,000. Notional 300: his maker fee 0.06, her taker fee 0.15.
// - Flat, all margin back in the general accounts: Frank 300 - 0.10 -
//   0.04 - 0.06 = 299.80, Gina 1,000 - 0.25 - 0.10 - 0.15 = 999.50.

const MARKET = 'BTC-USD-PERP';

/// The cells of the signed-in trader's position on the market (its figures, not its controls).
function position(page: Page) {
  return page.getByRole('table', { name: 'Your positions' }).locator(`tr[data-market="${MARKET}"]`).locator('th, td:not(.row-control)');
}

/// The cells of the trader's position on the market's trading page.
function positionHere(page: Page) {
  return page.getByRole('table', { name: 'Your position' }).locator(`tr[data-market="${MARKET}"]`).locator('th, td');
}

/// The cells of one of the trader's orders on a trading page, open or done.
function orderRow(page: Page, table: 'Open orders' | 'Recent orders', id: string) {
  return page.getByRole('table', { name: table }).locator(`tr[data-order-id="${id}"]`).locator('td');
}

/// The id of the order the trading page's form just placed, once it says it placed one that matches `said`.
async function placedOrder(page: Page, said: RegExp): Promise<string> {
  const status = page.getByRole('form', { name: 'Place an order' }).getByRole('status');
  await expect(status).toHaveText(said);
  return /^Order ([\w-]+):/.exec((await status.textContent()) ?? '')?.[1] ?? '';
}

/// The cells of the market's row in the markets table.
function marketRow(page: Page) {
  return page.getByRole('table', { name: 'Perpetual markets' }).locator(`tr[data-market="${MARKET}"]`);
}

/// The countdown to the next funding, in seconds.
async function secondsToFunding(page: Page): Promise<number> {
  const text = (await marketRow(page).getByRole('timer').textContent()) ?? '';
  const match = /^(\d{2,}):(\d{2}):(\d{2})$/.exec(text);
  if (!match) throw new Error(`not a countdown: "${text}"`);
  return Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
}

async function submitPrice(page: Page, price: string) {
  const form = page.getByRole('form', { name: 'Submit a price' });
  await form.getByLabel('Price (USD)').fill(price);
  await form.getByRole('button', { name: 'Submit price' }).click();
}

test('operators list a perpetual, its oracle prices it, two traders open positions, manage their margin and close them', async ({ browser }) => {
  test.setTimeout(240_000);
  // Funding is paid at 00:00, 08:00 and 16:00 UTC: a run across one would
  // see a payment and a countdown starting again, so it starts after one.
  const untilFunding = 8 * 3_600_000 - (Date.now() % (8 * 3_600_000));
  if (untilFunding < 300_000) {
    test.setTimeout(240_000 + untilFunding);
    await new Promise((resolve) => setTimeout(resolve, untilFunding + 2_000));
  }
  const problems: string[] = [];

  // The operator lists the market and names its oracle, from the console.
  const ops = await signedIn(browser, OPERATOR.email, problems, OPERATOR_PASSWORD, OPERATOR.secret);
  await ops.goto('/operator/markets');
  const list = ops.getByRole('form', { name: 'List a perpetual market' });
  for (const [label, value] of [
    ['Base asset', 'BTC'],
    ['Collateral asset', 'USD'],
    ['Tick size', '0.1'],
    ['Lot size', '0.001'],
    ['Maker fee rate', '0.0002'],
    ['Taker fee rate', '0.0005'],
    ['Max notional', '1000000'],
    ['Initial margin rate', '0.1'],
    ['Maintenance margin rate', '0.05'],
    ['Liquidation penalty rate', '0.01'],
    ['Interest rate per interval', '0'],
    ['Funding interval (hours)', '8'],
  ]) {
    await list.getByLabel(label, { exact: true }).fill(value);
  }
  await list.getByRole('button', { name: 'List a perpetual market' }).click();
  await expect(list.getByRole('status')).toHaveText(`Market ${MARKET} listed: up to 10× leverage, funding every 8 h.`);
  const listed = ops.getByRole('table', { name: 'Listed perpetuals' }).locator(`tr[data-market="${MARKET}"]`).locator('th, td');
  await expect(listed).toHaveText([MARKET, '0.1 / 0.001', 'to 1,000,000.00 USD: 10.00% / 5.00% (10×)', '1.00%', '8 h', '— / —', '0 BTC', '0.00 USD']);
  const oracle = ops.getByRole('form', { name: 'Set oracle' });
  await oracle.getByLabel('Market', { exact: true }).fill(MARKET);
  await oracle.getByLabel('User email').fill('oscar@browser.example');
  await oracle.getByLabel('Source number').fill('1');
  await oracle.getByRole('button', { name: 'Set oracle' }).click();
  await expect(oracle.getByRole('status')).toHaveText(`oscar@browser.example prices ${MARKET} as source 1.`);
  await visit(ops, 'operator-perpetuals');

  // Gina chooses isolated margin at 5x before she trades (only while flat).
  const gina = await signedIn(browser, 'gina@browser.example', problems);
  await gina.getByRole('link', { name: 'Perpetuals' }).click();
  await expect(gina.getByRole('heading', { name: 'Perpetual futures', level: 1 })).toBeVisible();
  // No price yet: no mark, no index.
  await expect(marketRow(gina).locator('th, td')).toHaveText([MARKET, '—', 'stale', '—', '0.0000% / 8 h', /^\d{2}:\d{2}:\d{2}$/, '0 BTC', '0.00 USD', '10×', 'Trading']);
  await expect(gina.getByText('No positions yet')).toBeVisible();
  const mode = gina.getByRole('form', { name: 'Set margin mode' });
  await mode.getByRole('radiogroup', { name: 'Margin mode' }).getByText('Isolated', { exact: true }).click();
  await expect(mode.getByRole('radio', { name: 'Isolated' })).toBeChecked();
  await mode.getByRole('button', { name: 'Set margin mode' }).click();
  await expect(mode.getByRole('status')).toHaveText(`${MARKET} is in isolated margin.`);
  const ginaLeverage = gina.getByRole('form', { name: 'Set leverage' });
  await ginaLeverage.getByLabel('Leverage').fill('5');
  await ginaLeverage.getByRole('button', { name: 'Set leverage' }).click();
  await expect(ginaLeverage.getByRole('status')).toHaveText(`Leverage on ${MARKET} is 5×; margin 0.00 USD.`);
  await expect(position(gina)).toHaveText([MARKET, 'Flat', '0 BTC', '—', '—', '0.00', '0.00', '0.00', '—', '5×', 'Isolated', '0.00']);
  // She is not the market's oracle: her price is refused with the API's code.
  await submitPrice(gina, '60000');
  const refused = gina.getByRole('form', { name: 'Submit a price' }).getByRole('alert');
  await expect(refused).toContainText('FORBIDDEN');
  await expect(refused).toContainText('is not an oracle');
  await expect(marketRow(gina).locator('td').nth(0)).toHaveText('—');

  // Oscar, the oracle, prices it at 50,000: the index and the mark.
  const oscar = await signedIn(browser, 'oscar@browser.example', problems);
  await oscar.goto('/perpetuals');
  await submitPrice(oscar, '50000');
  await expect(oscar.getByRole('form', { name: 'Submit a price' }).getByRole('status')).toHaveText(`Price taken for ${MARKET}: index 50,000, mark 50,000.`);
  await expect(marketRow(oscar).locator('td').nth(0)).toHaveText('50,000');
  await expect(marketRow(oscar).locator('td').nth(1)).toHaveText('50,000');

  // Frank bids on the trading page, which shows the perpetual's mark and index; Gina sells into it.
  const frank = await signedIn(browser, 'frank@browser.example', problems);
  await frank.goto('/perpetuals');
  await marketRow(frank).getByRole('link', { name: MARKET }).click();
  await expect(frank.getByRole('heading', { name: MARKET, level: 1 })).toBeVisible();
  await expect(frank.getByTestId('mark-price')).toHaveText('50,000');
  await expect(frank.getByTestId('index-price')).toHaveText('50,000');
  // The index goes stale 60 s after the oracle's last price, and then only
  // orders that reduce a position are taken: a fresh price before trading,
  // however long the pages took to get here.
  await submitPrice(oscar, '50000');
  await expect(oscar.getByRole('form', { name: 'Submit a price' }).getByRole('status')).toHaveText(`Price taken for ${MARKET}: index 50,000, mark unchanged.`);
  const frankBalances = frank.getByRole('table', { name: 'Balances' });
  await expect(frankBalances.locator('tr[data-asset="USD"] td')).toHaveText(['300.00', '0.00']);
  // The collateral only: the base never moves on a perpetual market.
  await expect(frankBalances.locator('tr[data-asset="BTC"]')).toHaveCount(0);
  await placeLimit(frank, 'Buy', '50000', '0.01');
  // His order's margin, 10% of 500, left his general account.
  await expect(frankBalances.locator('tr[data-asset="USD"] td')).toHaveText(['250.00', '0.00']);
  await visit(frank, 'perpetual-market-with-a-bid');
  await gina.goto(`/trade/${MARKET}`);
  await placeLimit(gina, 'Sell', '50000', '0.01');
  await expect(gina.getByRole('table', { name: 'Latest trades' }).getByRole('row', { name: /^50000(\.0+)? 0\.010*(\s|$)/ })).toBeVisible();
  // The maker fee, 0.10, from his general account.
  await expect(frankBalances.locator('tr[data-asset="USD"] td')).toHaveText(['249.90', '0.00']);
  const frankHere = positionHere(frank);
  await expect(frankHere).toHaveText([MARKET, 'Long', '0.01 BTC', '50,000', '50,000', '0.00', '50.00', '25.00', '21,063.1', '10×', 'Cross', '0.00']);
  const ginaHere = positionHere(gina);
  await expect(ginaHere).toHaveText([MARKET, 'Short', '0.01 BTC', '50,000', '50,000', '0.00', '99.75', '25.00', '57,119.1', '5×', 'Isolated', '0.00']);
  // Her order's margin, 20% of 500, left her general account; the fee came out of the margin.
  await expect(gina.getByRole('table', { name: 'Balances' }).locator('tr[data-asset="USD"] td')).toHaveText(['900.00', '0.00']);
  await visit(gina, 'perpetual-market-after-a-trade');

  // Both see their positions on the Perpetuals page.
  await frank.getByRole('link', { name: 'Perpetuals' }).click();
  await gina.getByRole('link', { name: 'Perpetuals' }).click();
  await expect(position(frank)).toHaveText([MARKET, 'Long', '0.01 BTC', '50,000', '50,000', '0.00', '50.00', '25.00', '21,063.1', '10×', 'Cross', '0.00']);
  await expect(position(gina)).toHaveText([MARKET, 'Short', '0.01 BTC', '50,000', '50,000', '0.00', '99.75', '25.00', '57,119.1', '5×', 'Isolated', '0.00']);
  await expect(marketRow(frank).locator('td')).toHaveText(['50,000', '50,000', '50,000', '0.0000% / 8 h', /^\d{2}:\d{2}:\d{2}$/, '0.01 BTC', '0.00 USD', '10×', 'Trading']);
  await expect(frank.getByText('No funding paid yet.')).toBeVisible();
  await expect(frank.getByText('No liquidations.')).toBeVisible();

  // The countdown to the next funding ticks on this side.
  const first = await secondsToFunding(frank);
  expect(first).toBeGreaterThan(0);
  expect(first).toBeLessThanOrEqual(8 * 3600);
  await expect.poll(() => secondsToFunding(frank), { timeout: 5_000 }).toBeLessThan(first);
  await visit(frank, 'perpetuals-long');

  // Oscar moves the price to 51,000: 10.00 from Gina's margin into Frank's.
  await submitPrice(oscar, '51000');
  await expect(oscar.getByRole('form', { name: 'Submit a price' }).getByRole('status')).toHaveText(`Price taken for ${MARKET}: index 51,000, mark 51,000.`);
  await expect(position(frank)).toHaveText([MARKET, 'Long', '0.01 BTC', '50,000', '51,000', '+10.00', '60.00', '25.50', '21,063.1', '10×', 'Cross', '0.00']);
  await expect(position(gina)).toHaveText([MARKET, 'Short', '0.01 BTC', '50,000', '51,000', '-10.00', '89.75', '25.50', '57,119.1', '5×', 'Isolated', '0.00']);

  // Frank lowers his leverage: more margin, the same cross liquidation price.
  const frankLeverage = frank.getByRole('form', { name: 'Set leverage' });
  await frankLeverage.getByLabel('Leverage').fill('5');
  await frankLeverage.getByRole('button', { name: 'Set leverage' }).click();
  await expect(frankLeverage.getByRole('status')).toHaveText(`Leverage on ${MARKET} is 5×; margin 102.00 USD.`);
  await expect(position(frank)).toHaveText([MARKET, 'Long', '0.01 BTC', '50,000', '51,000', '+10.00', '102.00', '25.50', '21,063.1', '5×', 'Cross', '0.00']);
  // With a position open his margin mode stays: refused with the API's code.
  const frankMode = frank.getByRole('form', { name: 'Set margin mode' });
  await frankMode.getByRole('radiogroup', { name: 'Margin mode' }).getByText('Isolated', { exact: true }).click();
  await frankMode.getByRole('button', { name: 'Set margin mode' }).click();
  await expect(frankMode.getByRole('alert')).toContainText('BAD_USER_INPUT');
  await expect(frankMode.getByRole('alert')).toContainText('only with no position');
  await expect(position(frank).nth(10)).toHaveText('Cross');
  await expect(frankMode.getByRole('radio', { name: 'Cross' })).toBeChecked();

  // Gina's isolated margin: nothing to take back, then 20 added and 7.75 taken back.
  const reduce = gina.getByRole('form', { name: 'Reduce margin' });
  await reduce.getByLabel('Amount to take back (USD)').fill('1');
  await reduce.getByRole('button', { name: 'Reduce margin' }).click();
  await expect(reduce.getByRole('alert')).toContainText('INSUFFICIENT_FUNDS');
  await expect(position(gina).nth(6)).toHaveText('89.75');
  const add = gina.getByRole('form', { name: 'Add margin' });
  await add.getByLabel('Amount to add (USD)').fill('20');
  await add.getByRole('button', { name: 'Add margin' }).click();
  await expect(add.getByRole('status')).toHaveText('Added 20 USD: margin 109.75 USD, liquidation price 59,023.9.');
  await expect(position(gina)).toHaveText([MARKET, 'Short', '0.01 BTC', '50,000', '51,000', '-10.00', '109.75', '25.50', '59,023.9', '5×', 'Isolated', '0.00']);
  await reduce.getByLabel('Amount to take back (USD)').fill('7.75');
  await reduce.getByRole('button', { name: 'Reduce margin' }).click();
  await expect(reduce.getByRole('status')).toHaveText('Took back 7.75 USD: margin 102.00 USD, liquidation price 58,285.8.');
  await expect(position(gina)).toHaveText([MARKET, 'Short', '0.01 BTC', '50,000', '51,000', '-10.00', '102.00', '25.50', '58,285.8', '5×', 'Isolated', '0.00']);
  await reduce.getByLabel('Amount to take back (USD)').fill('0.01');
  await reduce.getByRole('button', { name: 'Reduce margin' }).click();
  await expect(reduce.getByRole('alert')).toContainText('INSUFFICIENT_FUNDS');
  await visit(gina, 'perpetuals-short');

  // At a phone's width the tables scroll inside their panels.
  await frank.setViewportSize({ width: 390, height: 844 });
  await expect(position(frank).nth(8)).toHaveText('21,063.1');
  await fitsTheWidth(frank);
  await visit(frank, 'perpetuals-narrow');
  await frank.setViewportSize({ width: 1280, height: 720 });

  // A fresh price before the orders below, however long the steps above took: the same 51,000.
  await submitPrice(oscar, '51000');
  await expect(oscar.getByRole('form', { name: 'Submit a price' }).getByRole('status')).toHaveText(`Price taken for ${MARKET}: index 51,000, mark unchanged.`);

  // A reduce-only buy would grow Frank's long: refused with the API's code, nothing held.
  await frank.goto(`/trade/${MARKET}`);
  const frankForm = frank.getByRole('form', { name: 'Place an order' });
  const frankUsd = frank.getByRole('table', { name: 'Balances' }).locator('tr[data-asset="USD"] td');
  await expect(frankUsd).toHaveText(['207.90', '0.00']);
  await setReduceOnly(frank, true);
  await sendLimit(frank, 'Buy', '50000', '0.01');
  await expect(frankForm.getByRole('alert')).toContainText('BAD_USER_INPUT');
  await expect(frankForm.getByRole('alert')).toContainText('a reduce-only order must shrink the position');
  await expect(frankForm.getByRole('status')).toHaveCount(0);
  await expect(frank.getByText('No open orders.')).toBeVisible();
  await expect(frankUsd).toHaveText(['207.90', '0.00']);

  // A reduce-only sell of part of it is taken, rests, and says so in his orders.
  await sendLimit(frank, 'Sell', '50000', '0.004');
  const reducing = await placedOrder(frank, /^Order [\w-]+: open, reduce only$/);
  await expect(orderRow(frank, 'Open orders', reducing)).toHaveText(['Sell', 'limit reduce only', /^50000(\.0+)?$/, /^0(\.0+)? \/ 0\.0040*$/, 'open', /Cancel/]);
  await expect(orderRow(frank, 'Open orders', reducing).nth(1).locator('.tag')).toHaveText('reduce only');
  await visit(frank, 'perpetual-market-reduce-only');

  // Gina's reduce-only buy takes it: 0.006 BTC left each way.
  await gina.goto(`/trade/${MARKET}`);
  await setReduceOnly(gina, true);
  await sendLimit(gina, 'Buy', '50000', '0.004');
  await placedOrder(gina, /^Order [\w-]+: filled, reduce only$/);
  await expect(orderRow(frank, 'Recent orders', reducing)).toHaveText(['Sell', 'limit reduce only', /^50000(\.0+)?$/, /^0\.0040* \/ 0\.0040*$/, 'filled', '']);
  await expect(positionHere(frank).nth(1)).toHaveText('Long');
  await expect(positionHere(frank).nth(2)).toHaveText('0.006 BTC');
  await expect(positionHere(frank).nth(5)).toHaveText('+6.00');
  await expect(positionHere(frank).nth(7)).toHaveText('15.30');
  await expect(positionHere(gina).nth(1)).toHaveText('Short');
  await expect(positionHere(gina).nth(2)).toHaveText('0.006 BTC');
  await expect(positionHere(gina).nth(5)).toHaveText('-6.00');
  await expect(positionHere(gina).nth(7)).toHaveText('15.30');

  // Frank closes at a limit of 50,000 from his position: a reduce-only sell of all of it, resting.
  const frankPosition = frank.getByRole('region', { name: 'Your position' });
  const frankClose = frankPosition.getByRole('form', { name: `Close position on ${MARKET}` });
  await frankClose.getByLabel('Limit price (USD)').fill('50000');
  await frankClose.getByRole('button', { name: 'Close position' }).click();
  await expect(frankPosition.getByRole('status')).toHaveText(/^Closing BTC-USD-PERP: order [\w-]+ to sell 0\.006 BTC at 50,000, reduce only: open\.$/);
  const closing = /order ([\w-]+)/.exec((await frankPosition.getByRole('status').textContent()) ?? '')?.[1] ?? '';
  await expect(orderRow(frank, 'Open orders', closing)).toHaveText(['Sell', 'limit reduce only', /^50000(\.0+)?$/, /^0(\.0+)? \/ 0\.0060*$/, 'open', /Cancel/]);
  await expect(positionHere(frank).nth(2)).toHaveText('0.006 BTC');

  // Gina closes at the market from her row on the Perpetuals page: her buy takes his offer, and both are flat.
  await gina.getByRole('link', { name: 'Perpetuals' }).click();
  await expect(position(gina).nth(2)).toHaveText('0.006 BTC');
  await gina.getByRole('table', { name: 'Your positions' }).getByRole('button', { name: `Close position on ${MARKET}` }).click();
  const ginaClose = gina.getByRole('form', { name: `Close position on ${MARKET}` });
  await expect(ginaClose).toContainText('Empty: at the market, no higher than the mark plus your initial margin rate (1 / 5, at most 10%)');
  await visit(gina, 'perpetuals-closing');
  await ginaClose.getByRole('button', { name: 'Close position' }).click();
  await expect(gina.getByRole('region', { name: 'Your positions' }).getByRole('status')).toHaveText(
    /^Closing BTC-USD-PERP: order [\w-]+ to buy 0\.006 BTC at the market, no higher than 56,100, reduce only: filled\.$/,
  );
  // Flat: her row stays for the leverage and margin mode she chose, with nothing to close.
  await expect(position(gina)).toHaveText([MARKET, 'Flat', '0 BTC', '—', '51,000', '0.00', '0.00', '0.00', '—', '5×', 'Isolated', '0.00']);
  await expect(gina.getByRole('table', { name: 'Your positions' }).getByRole('button', { name: `Close position on ${MARKET}` })).toHaveCount(0);
  await visit(gina, 'perpetuals-closed');
  await expect(frank.getByText('No position on this market.')).toBeVisible();
  await expect(frankPosition.getByRole('form', { name: `Close position on ${MARKET}` })).toHaveCount(0);
  await expect(orderRow(frank, 'Recent orders', closing)).toHaveText(['Sell', 'limit reduce only', /^50000(\.0+)?$/, /^0\.0060* \/ 0\.0060*$/, 'filled', '']);
  // All they had, less their fees: 299.80 and 999.50.
  await expect(frankUsd).toHaveText(['299.80', '0.00']);
  await gina.goto(`/trade/${MARKET}`);
  await expect(gina.getByText('No position on this market.')).toBeVisible();
  await expect(gina.getByRole('table', { name: 'Balances' }).locator('tr[data-asset="USD"] td')).toHaveText(['999.50', '0.00']);
  await visit(frank, 'perpetual-market-closed');
  expect(problems).toEqual([]);
});
