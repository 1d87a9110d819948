import { expect, test } from '@playwright/test';
import { fitsTheWidth, signIn, visit, watch } from './helpers';

test.describe('at a phone width, in the dark theme the system asks for', () => {
  test.use({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true, hasTouch: true });

  test('every trader page fits, reads and passes axe', async ({ page }) => {
    const problems: string[] = [];
    watch(page, problems);
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark');
    await expect(page.getByRole('link', { name: 'BTC-USD' })).toBeVisible();
    await fitsTheWidth(page);
    await visit(page, 'phone-dark-markets');
    await signIn(page, 'alice@browser.example');
    for (const [path, name, ready] of [
      ['/trade/BTC-USD', 'phone-dark-market', 'Place an order'],
      ['/wallet', 'phone-dark-wallet', 'Balances'],
      ['/convert', 'phone-dark-convert', 'Your conversions'],
      ['/withdrawals', 'phone-dark-withdrawals', 'Request a withdrawal'],
      ['/security', 'phone-dark-security', 'Sessions'],
      ['/invest', 'phone-dark-invest', 'Offerings'],
    ]) {
      await page.goto(path);
      await expect(page.getByRole('heading', { name: ready })).toBeVisible();
      await fitsTheWidth(page);
      await visit(page, name);
    }
    // The theme toggle overrides the system's choice, and keeps it.
    await page.getByRole('button', { name: 'Switch to the light theme' }).click();
    await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
    await page.reload();
    await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
    await visit(page, 'phone-light-security');
    expect(problems).toEqual([]);
  });
});
