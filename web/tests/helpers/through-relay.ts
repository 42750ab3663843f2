// Alice's browser talking to the real server through a relay that can turn malicious
// (helpers/hostile-relay.ts): what the tests of a hostile server start from.

import type { Browser, BrowserContext, Locator, Page } from '@playwright/test';

import type { Server } from '../fixtures.ts';
import { watchedContext } from './contexts.ts';
import { HostileRelay } from './hostile-relay.ts';

/** Alice's page behind the relay, and what the tests look at on it. */
export interface AliceThroughRelay {
  relay: HostileRelay;
  context: BrowserContext;
  alice: Page;
  /** The main navigation's "Groups" button. */
  groupsTab: Locator;
  /** The first group in her groups list. */
  group: Locator;
  /** Closes her context, then the relay. */
  close(): Promise<void>;
}

/** A relay in front of `server` and a new watched context for Alice that goes through it. */
export async function aliceThroughRelay(browser: Browser, server: Server, problems: string[]): Promise<AliceThroughRelay> {
  const relay = await HostileRelay.start(server);
  const context = await watchedContext(browser, relay.origin, problems);
  const alice = await context.newPage();
  return {
    relay,
    context,
    alice,
    groupsTab: alice.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }),
    group: alice.locator('button.group').first(),
    close: async () => {
      await context.close();
      await relay.close();
    },
  };
}
