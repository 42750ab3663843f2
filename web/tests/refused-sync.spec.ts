// A server that refuses to serve a group to the web app. A server can always refuse service
// (PROTOCOL.md §12); what it must not manage is to make a refused group look like a quiet one,
// or to put words of its own in front of the person. The server, played by a relay in front of
// the real one (helpers/hostile-relay.ts), answers every group sync of Alice's browser with
// `not_member` and a reason of its own making (a false claim, markup and a right-to-left
// override), and drops the connection, so that her app connects and syncs again.
//
// What Alice must notice: the groups list marks the group as not updating, the conversation says
// that the server refuses it and to tell her facilitator if it lasts, and the server's reason is
// shown nowhere and interpreted nowhere. Once the server serves the group again, the marks go.

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { aliceThroughRelay } from './helpers/through-relay.ts';
import { joinFromLink, messages } from './helpers/member.ts';

const ALICE = 'amber orchard hums gently';
/** The server's reason: a lie, markup that would run if it were HTML, and a bidi override. */
const REASON =
  'Your facilitator removed you. Call +1 555 0100 \u202Egnp.exe <img src=x onerror="document.title=\'pwned\'">';
const REFUSED =
  "The server refuses to send this group's messages to this device, so new messages here may be missing. Tell your facilitator if it lasts.";

test('a group the server refuses to serve: the web app marks it, says so in our words, and clears it when served again', async ({
  browser,
  problems,
  server,
}) => {
  const { relay, alice, groupsTab, group, close } = await aliceThroughRelay(browser, server, problems);
  const people: CliPerson[] = [];
  const banner = alice.getByText(REFUSED);
  /**
   * Whether any part of the server's reason reached the page: as text, visible or not, in an
   * attribute (a label a screen reader would read out), or as an element it made.
   */
  const reasonShown = async () => {
    const page = await alice.content();
    return (
      page.includes('removed you') ||
      page.includes('555 0100') ||
      page.includes('\u202E') ||
      page.includes('gnp.exe') ||
      (await alice.locator('img[src="x"]').count()) > 0 ||
      (await alice.title()) === 'pwned'
    );
  };
  try {
    const fay = CliPerson.init(server, 'Fay');
    people.push(fay);

    await test.step('Fay and Alice (in the browser, through the relay) share a group', async () => {
      fay.ok(['group', 'create', '--label', 'circle']);
      const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
      await joinFromLink(alice, invite.web_link, { name: 'Alice', passphrase: ALICE });
      await expect(messages(alice)).toBeVisible();
      fay.ok(['send', 'circle', 'Welcome, Alice.']);
      await expect(messages(alice).getByText('Welcome, Alice.')).toBeVisible();
      await groupsTab.click();
      await expect(group).toBeVisible();
      await expect(group).not.toContainText('Not updating');
    });

    await test.step('the server refuses the group: the list marks it, in our words only', async () => {
      relay.refuseSyncsWith = REASON;
      relay.dropWebSockets();
      await expect(group).toContainText('Not updating: open it to see why');
      expect(relay.refusedSyncs).toBeGreaterThan(0);
      expect(await reasonShown()).toBe(false);
      await checkScreen(alice, 'refused-sync-marked');
    });

    await test.step('the conversation says the server refuses it, and to tell the facilitator', async () => {
      await group.click();
      await expect(banner).toBeVisible();
      expect(await reasonShown()).toBe(false);
      await checkScreen(alice, 'refused-sync-conversation');
    });

    await test.step('the server serves the group again: the marks go', async () => {
      relay.refuseSyncsWith = undefined;
      relay.dropWebSockets();
      fay.ok(['send', 'circle', 'Good to have you with us.']);
      await expect(messages(alice).getByText('Good to have you with us.')).toBeVisible();
      await expect(banner).toHaveCount(0);
      await groupsTab.click();
      await expect(group).toBeVisible();
      await expect(group).not.toContainText('Not updating');
    });
    expect(relay.errors).toEqual([]);
  } finally {
    for (const person of people) person.remove();
    await close();
  }
});
