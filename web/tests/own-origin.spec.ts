// The app hosted on its own origin (README, "Hosting the app on its own origin"): one
// confide-server serves the app with `--web-relay` naming a second confide-server, the relay,
// which serves no app. Each has its own development certificate, and Chromium is given exactly
// those two SPKI pins. The member's device registers on the relay, joins a group a facilitator
// (the CLI, on the relay) made, and the message the member sends is read there; the app's host
// only ever served files and its `/web-config.json`, and once it is down the installed app still
// starts on the relay.

import { chromium } from '@playwright/test';

import { CHROMIUM, CHROMIUM_FLAGS, expect, startServer, test, WEB_DIR } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { watchedContext } from './helpers/contexts.ts';
import { acceptAgreement, joinFromLink, messages, send, unlock } from './helpers/member.ts';

const PASSPHRASE = 'violet harbour lantern quietly';
const AGREEMENT = 'We listen before we answer, and what is said here stays here.';

test('the app served by one server talks to the relay its --web-relay names', async ({ problems }, testInfo) => {
  const relay = await startServer([]);
  const app = await startServer(['--web-dir', WEB_DIR, '--web-relay', `wss://localhost:${relay.port}/`]);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    chromiumSandbox: false,
    // Exactly the two development certificates: the app's host and the relay.
    args: [`--ignore-certificate-errors-spki-list=${app.server.spki},${relay.server.spki}`, ...CHROMIUM_FLAGS],
  });
  testInfo.annotations.push({ type: 'browser', description: `${CHROMIUM} chromium ${browser.version()}` });
  const fay = CliPerson.init(relay.server, 'Fay');
  try {
    expect(app.server.spki).not.toBe(relay.server.spki);
    fay.ok(['group', 'create', '--label', 'circle']);
    fay.ok(['agreement', 'set', 'circle', AGREEMENT]);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle', '--approval']);

    const context = await watchedContext(browser, app.server.origin, problems);
    const page = await context.newPage();
    // The invite is for a group on the relay: joining works only if the app talks to it.
    await joinFromLink(page, invite.web_link, { name: 'Bob', passphrase: PASSPHRASE, note: 'from the app host' });
    await expect(page.getByRole('heading', { name: 'Waiting for a facilitator' })).toBeVisible();
    const config = await page.evaluate(async () => {
      const response = await fetch('/web-config.json', { cache: 'no-store' });
      return {
        status: response.status,
        body: (await response.json()) as unknown,
        cacheControl: response.headers.get('cache-control'),
        csp: response.headers.get('content-security-policy'),
      };
    });
    expect(config.status).toBe(200);
    expect(config.body).toEqual({ relay: `wss://localhost:${relay.port}/` });
    expect(config.cacheControl).toBe('no-store');
    expect(config.csp).toContain(`connect-src 'self' wss://localhost:${relay.port};`);
    const requests = fay.json<{ user: string; name: string; note: string }[]>(['mod', 'requests', 'circle']);
    const bob = requests.find((request) => request.name === 'Bob');
    expect(bob?.note).toBe('from the app host');
    fay.ok(['mod', 'approve', 'circle', bob!.user]);
    await acceptAgreement(page, AGREEMENT);

    await send(page, 'Hello by way of the relay');
    await expect(messages(page).getByText('Hello by way of the relay')).toBeVisible();
    await expect
      .poll(() => fay.json<{ text: string; name: string }[]>(['read', 'circle']).map((m) => `${m.name}: ${m.text}`))
      .toContain('Bob: Hello by way of the relay');
    await expect(page.getByRole('banner').getByRole('status')).toHaveCount(0);

    // The installed app (the service worker's checked copy) starts while its host is down: the
    // worker uses the host's last answer, so it reaches the same relay, and news arrives.
    await expect.poll(() => page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
    await app.stop();
    await page.reload();
    await unlock(page, PASSPHRASE);
    await expect(page.getByRole('banner').getByRole('status')).toHaveCount(0);
    fay.ok(['send', 'circle', 'The relay is still here']);
    await expect(page.getByText('1 new')).toBeVisible();
    await context.close();
    // The browser's own reports of the app host refusing connections are what this step is about.
    const unexpected = problems.filter((problem) => !problem.includes('ERR_CONNECTION_REFUSED'));
    problems.length = 0;
    problems.push(...unexpected);
    expect(problems, 'CSP violations, console errors or uncaught exceptions').toEqual([]);
  } finally {
    fay.remove();
    await browser.close();
    await app.stop();
    await relay.stop();
  }
});
