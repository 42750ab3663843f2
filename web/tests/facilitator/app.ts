// Reaching the facilitator's screens through the app: a new profile, a new group, and its
// facilitator tools. Role-based locators only (plan §6 "Page objects").

import type { Locator, Page } from '@playwright/test';

import { expect } from '../fixtures.ts';

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

/** The "Start a group" screen, once the profile exists and is unlocked. */
export async function reachCreateGroup(page: Page): Promise<void> {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'Start a group' })).toBeVisible();
}

/** Starts a group from the "Start a group" screen and waits for the facilitator tools. */
export async function startGroup(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Start the group' }).click();
  await expect(panel(page)).toBeVisible();
}
