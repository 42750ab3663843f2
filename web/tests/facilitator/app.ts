// Reaching the facilitator's screens through the app, as a person would: Fay creates her profile
// in the browser and joins a group from a link; the group's founder (Olive, on the CLI) makes her
// a facilitator; Fay opens the group's info, where the facilitator tools are. Role-based
// locators only (plan §6 "Page objects").

import type { Locator, Page } from '@playwright/test';

import { expect, type Server } from '../fixtures.ts';
import { CliPerson } from './cli.ts';

/** Fay's passphrase: long enough for the strength rule. */
export const FAY_PASSPHRASE = 'quiet orchard ladder evening';

/** The facilitator tools region. */
export function panel(page: Page): Locator {
  return page.getByRole('region', { name: 'Facilitator tools' });
}

/** Opens one of the panel's sections ("Needs you", "Members", "Invites", "Settings", "Moderation log"). */
export async function openSection(page: Page, name: string): Promise<void> {
  await panel(page)
    .getByRole('navigation', { name: 'Facilitator sections' })
    .getByRole('button', { name: new RegExp(`^${name}`) })
    .click();
}

/**
 * Olive (CLI) founds the group "circle" and invites Fay, who creates her profile in `page` and
 * joins; Olive makes her a facilitator, and Fay opens the group's info with her tools.
 * Returns Olive (remove her profile when done).
 */
export async function becomeFacilitator(page: Page, server: Server): Promise<CliPerson> {
  const olive = CliPerson.init(server, 'Olive');
  olive.ok(['group', 'create', '--label', 'circle']);
  const invite = olive.json(['invite', 'create', 'circle']) as { web_link: string };
  await page.goto(`/${new URL(invite.web_link).hash}`);
  await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
  await page.getByRole('textbox', { name: 'Name in your groups' }).fill('Fay');
  await page.getByLabel('Passphrase', { exact: true }).fill(FAY_PASSPHRASE);
  await page.getByRole('button', { name: 'Create my profile' }).click();
  await expect(page.getByRole('heading', { name: "You're invited to a group" })).toBeVisible();
  await page.getByRole('button', { name: 'Join the group' }).click();
  await expect(page.getByRole('button', { name: 'Group info' })).toBeVisible();

  await expect.poll(() => (olive.json(['members', 'circle']) as unknown[]).length).toBe(2);
  olive.ok(['mod', 'role', 'circle', '@Fay', 'facilitator']);
  await page.getByRole('button', { name: 'Group info' }).click();
  await expect(panel(page)).toBeVisible();
  return olive;
}
