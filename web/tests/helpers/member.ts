// A member's flows in the app, as a person does them (role-based locators only): create a
// profile, join from a link (with a note for an approval invite), read and accept the
// agreement, write, unlock. The member and scenario tests use them.

import type { Locator, Page } from '@playwright/test';

import { expect } from '../fixtures.ts';

/** A conversation's message list. */
export function messages(page: Page): Locator {
  return page.getByRole('log', { name: 'Messages' });
}

/** The message box. */
export function messageBox(page: Page): Locator {
  return page.getByRole('textbox', { name: 'Message' });
}

/** On the welcome screen: names the profile, sets its passphrase and creates it. */
export async function createProfile(page: Page, name: string, passphrase: string): Promise<void> {
  await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
  await page.getByRole('textbox', { name: 'Name in your groups' }).fill(name);
  await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(passphrase);
  await page.getByRole('button', { name: 'Create my profile' }).click();
}

/**
 * Opens `link` (an https invite link) in `page`, creates the profile and joins, with `note` for
 * the facilitator when given (approval invites ask for one).
 */
export async function joinFromLink(
  page: Page,
  link: string,
  person: { name: string; passphrase: string; note?: string },
): Promise<void> {
  const url = new URL(link);
  await page.goto(`/${url.hash}`);
  expect(new URL(page.url()).hash).toBe('');
  await createProfile(page, person.name, person.passphrase);
  await expect(page.getByRole('heading', { name: "You're invited to a group" })).toBeVisible();
  if (person.note !== undefined) {
    await page.getByRole('textbox', { name: 'A note for the facilitator (optional)' }).fill(person.note);
  }
  await page.getByRole('button', { name: 'Join the group' }).click();
}

/** Reads the agreement to its end (by keyboard), agrees, and waits for the conversation. */
export async function acceptAgreement(page: Page, contains: string): Promise<void> {
  await expect(page.getByRole('heading', { name: 'The group agreement' })).toBeVisible();
  const text = page.getByRole('region', { name: 'Agreement text' });
  await expect(text).toContainText(contains);
  await text.focus();
  await page.keyboard.press('End');
  await page.getByRole('button', { name: 'I agree' }).click();
  await expect(messages(page)).toBeVisible();
}

/** Writes `text` and sends it with Ctrl+Enter; waits until the box is empty again. */
export async function send(page: Page, text: string): Promise<void> {
  await messageBox(page).fill(text);
  await messageBox(page).press('Control+Enter');
  await expect(messageBox(page)).toHaveValue('');
}

/** On the "Welcome back" screen: unlocks with `passphrase` and waits for the groups. */
export async function unlock(page: Page, passphrase: string): Promise<void> {
  await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
  await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(passphrase);
  await page.getByRole('button', { name: 'Unlock' }).click();
  await expect(page.getByRole('heading', { name: 'Your groups' })).toBeVisible();
}
