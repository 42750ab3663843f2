// A malicious server keeps a removal from the web app (PROTOCOL.md §12, "withhold the newest
// ops"): Fay removes Carol, and the server, played by a relay in front of the real one
// (helpers/hostile-relay.ts), takes the removal out of everything it sends Alice's browser, while
// Fay's new sender key and messages, which name the epoch after it, still come through.
//
// What Alice must notice: the groups list marks the group, the conversation says others have
// seen a change this device has not been shown and that her messages wait, and what she writes
// does wait — nothing goes out in the epoch Carol can still read. Once the server stops
// withholding, the conversation says the device caught up, and her message goes to the group.

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { watchedContext } from './helpers/contexts.ts';
import { HostileRelay } from './helpers/hostile-relay.ts';
import { joinFromLink, messages, send } from './helpers/member.ts';

const ALICE = 'copper meadow whistles softly';
const WAITS = 'Only for the people still here.';

test('a removal the server withholds: the web app warns, marks the group and holds what Alice writes until it is shown', async ({
  browser,
  problems,
  server,
}) => {
  const relay = await HostileRelay.start(server);
  const fay = CliPerson.init(server, 'Fay');
  const carol = CliPerson.init(server, 'Carol');
  const context = await watchedContext(browser, relay.origin, problems);
  const alice = await context.newPage();
  const groupsTab = alice.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' });
  const group = alice.locator('button.group').first();
  const waiting = messages(alice).getByRole('article', { name: 'Your message, waiting to send' });
  try {
    await test.step('Fay, Carol and Alice (in the browser, through the relay) share a group', async () => {
      fay.ok(['group', 'create', '--label', 'circle']);
      const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle', '--uses', '2']);
      carol.ok(['join', invite.web_link, '--label', 'circle']);
      await joinFromLink(alice, invite.web_link, { name: 'Alice', passphrase: ALICE });
      await expect(messages(alice)).toBeVisible();
      fay.ok(['send', 'circle', 'Welcome, both of you.']);
      await expect(messages(alice).getByText('Welcome, both of you.')).toBeVisible();
      await groupsTab.click();
      await expect(group).toBeVisible();
      await expect(group).not.toContainText('warning');
    });

    await test.step('the server withholds Carol’s removal: the group is marked', async () => {
      relay.withholdFrom = relay.highestOpSeq + 1;
      fay.ok(['mod', 'remove', 'circle', '@Carol']);
      fay.ok(['send', 'circle', 'Carol has left the group.']);
      await expect(group).toContainText('A warning here: open it to read it');
      expect(relay.withheld).toBeGreaterThan(0);
      await checkScreen(alice, 'withheld-removal-marked');
    });

    await test.step('the conversation says why, and what Alice writes waits', async () => {
      await group.click();
      await expect(messages(alice).getByText(/Others here have seen a change to the group that this device has not been shown yet/)).toBeVisible();
      await expect(messages(alice).getByText('Carol has left the group.')).toHaveCount(0);
      await send(alice, WAITS);
      await expect(waiting).toContainText(WAITS);
      expect(fay.ok(['read', 'circle'])).not.toContain(WAITS);
      await groupsTab.click();
      await expect(group).toBeVisible();
      await expect(group).not.toContainText('warning');
    });

    await test.step('the server stops withholding: Alice catches up and her message goes', async () => {
      relay.withholdFrom = undefined;
      fay.ok(['send', 'circle', 'Still with us, Alice?']);
      await group.click();
      await expect(messages(alice).getByText(/This device has caught up with the group/)).toBeVisible();
      await expect(messages(alice).getByText('Carol has left the group.')).toBeVisible();
      await expect(waiting).toHaveCount(0);
      await expect.poll(() => fay.ok(['read', 'circle'])).toContain(WAITS);
    });
  } finally {
    fay.remove();
    carol.remove();
    await context.close();
    await relay.close();
  }
});
