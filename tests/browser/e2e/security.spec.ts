import { expect, test } from '@playwright/test';
import { PASSWORD, signOut, totp, visit, watch } from './helpers';

test('sign up, then two-factor enrolment with the QR code, an API key, sessions and the kill switch', async ({ page }) => {
  const problems: string[] = [];
  watch(page, problems);
  const email = 'carol@browser.example';
  await page.goto('/signup');
  await visit(page, 'signup');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByTestId('signed-in-as')).toHaveText(email);

  await page.getByRole('link', { name: 'Security' }).click();
  await expect(page.getByTestId('two-factor-state')).toContainText('Off');
  await expect(page.getByRole('table', { name: 'Sessions' }).getByRole('row')).toHaveCount(2);
  await expect(page.getByRole('table', { name: 'Sessions' })).toContainText('This session');
  await visit(page, 'security');

  // Enrol: a wrong password first, then the QR code and the secret.
  const enrol = page.getByRole('form', { name: 'Turn two-factor authentication on' });
  await enrol.getByLabel('Password').fill('not the password');
  await enrol.getByRole('button', { name: 'Set up two-factor authentication' }).click();
  await expect(enrol.getByRole('alert')).toBeVisible();
  await enrol.getByLabel('Password').fill(PASSWORD);
  await enrol.getByRole('button', { name: 'Set up two-factor authentication' }).click();
  const qr = page.getByRole('img', { name: 'QR code of the two-factor secret' });
  await expect(qr).toBeVisible();
  // The QR code drew (an SVG the CSP let through), not a broken image.
  expect(await qr.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
  const secret = (await page.getByTestId('two-factor-secret').textContent()) ?? '';
  expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
  await visit(page, 'security-two-factor-qr');
  const confirm = page.getByRole('form', { name: 'Confirm two-factor authentication' });
  await confirm.getByLabel('Code from the app').fill('000000' === totp(secret) ? '111111' : '000000');
  await confirm.getByRole('button', { name: 'Confirm' }).click();
  await expect(confirm.getByRole('alert')).toBeVisible();
  await confirm.getByLabel('Code from the app').fill(totp(secret));
  await confirm.getByRole('button', { name: 'Confirm' }).click();
  const codes = page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem');
  await expect(codes).toHaveCount(10);
  const recovery = await codes.allTextContents();
  await page.getByRole('button', { name: 'I have kept them' }).click();
  await expect(page.getByTestId('two-factor-state')).toContainText('On');

  // A key needs a fresh code now (the form asks for one): a recovery code serves, the app's was just used.
  const create = page.getByRole('form', { name: 'Create an API key' });
  await create.getByLabel('Name').fill('market maker');
  await create.getByText('Trade: place, amend and cancel orders').click();
  await create.getByLabel('Two-factor code').fill(recovery[0]);
  await create.getByRole('button', { name: 'Create key' }).click();
  await expect(page.getByTestId('api-key-secret')).not.toBeEmpty();
  const keys = page.getByRole('table', { name: 'API keys' });
  await expect(keys.getByRole('row', { name: /market maker/ })).toContainText('read, trade');
  await visit(page, 'security-api-key');
  await keys.getByRole('button', { name: 'Revoke the key market maker' }).click();
  await expect(page.getByText('No API keys.')).toBeVisible();

  // The kill switch, engaged and lifted by the trader.
  await page.getByRole('button', { name: 'Stop all my trading now' }).click();
  await expect(page.getByTestId('kill-switch-state')).toContainText('Engaged by you');
  await page.getByRole('button', { name: 'Lift my kill switch' }).click();
  await expect(page.getByTestId('kill-switch-state')).toContainText('Not engaged');

  // Signing in again asks for a code; a used recovery code is refused, another works.
  await signOut(page);
  await page.goto('/signin');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('TWO_FACTOR_REQUIRED');
  await page.getByLabel('Two-factor code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await expect(page.getByTestId('signed-in-as')).toHaveCount(0);
  await page.getByLabel('Two-factor code').fill(recovery[1]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('signed-in-as')).toHaveText(email);
  expect(problems).toEqual([]);
});
