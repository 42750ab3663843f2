// A malicious server keeps a removal from the web app (PROTOCOL.md §12, "withhold the newest
// ops"): Fay removes Carol, and the server, played by a relay in front of the real one
// (helpers/hostile-relay.ts), takes the removal out of everything it sends Alice's browser, while
// Fay's new sender key and messages, which name the epoch after it, still come through.
//
// What Alice must notice: the groups list marks the group, the conversation says others have
// seen a change this device has not been shown and that her messages wait, and what she writes
// does wait: the relay sees no post and no sealed key from her browser while it withholds (the
// real server behind it would refuse an old-epoch post anyway, so Fay not reading it proves
// nothing by itself). Once the server stops withholding, Fay's next message (of the new epoch)
// makes Alice's device sync again: the conversation says it caught up, shows the removal, and
// her message goes to the group.

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { aliceThroughRelay } from './helpers/through-relay.ts';
import { joinFromLink, messages, send } from './helpers/member.ts';

const ALICE = 'copper meadow whistles softly';
const WAITS = 'Only for the people still here.';
const REMOVED = 'Carol was removed from the group.';

test('a removal the server withholds: the web app warns, marks the group and holds what Alice writes until it is shown', async ({
  browser,
  problems,
  server,
}) => {
  const { relay, alice, groupsTab, group, close } = await aliceThroughRelay(browser, server, problems);
  const people: CliPerson[] = [];
  const waiting = messages(alice).getByRole('article', { name: 'Your message, waiting to send' });
  try {
    const fay = CliPerson.init(server, 'Fay');
    people.push(fay);
    const carol = CliPerson.init(server, 'Carol');
    people.push(carol);

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
      relay.withholdRemoval = true;
      fay.ok(['mod', 'remove', 'circle', '@Carol']);
      fay.ok(['send', 'circle', 'A new chapter for the two of us.']);
      await expect(group).toContainText('A warning here: open it to read it');
      expect(relay.withheld[0]).toBe('remove');
      await checkScreen(alice, 'withheld-removal-marked');
    });

    await test.step('the conversation says why, and what Alice writes waits', async () => {
      await group.click();
      await expect(messages(alice).getByText(/Others here have seen a change to the group that this device has not been shown yet/)).toBeVisible();
      await expect(messages(alice).getByText(REMOVED)).toHaveCount(0);
      await expect(messages(alice).getByText('A new chapter for the two of us.')).toHaveCount(0);
      await send(alice, WAITS);
      await expect(waiting).toContainText(WAITS);
      await expect(alice.getByText("You're offline.", { exact: false })).toHaveCount(0);
      await groupsTab.click();
      await expect(group).toBeVisible();
      await expect(group).not.toContainText('warning');
      // Nothing of Alice's went out in the epoch Carol can still read (the relay did read what
      // her browser sent meanwhile: the syncs that looked for the change).
      expect(relay.sentWhileWithholding).toContain('sync');
      expect(relay.sentWhileWithholding).not.toContain('post');
      expect(relay.sentWhileWithholding).not.toContain('send_sealed');
    });

    await test.step('the server stops withholding: Alice catches up and her message goes', async () => {
      relay.withholdRemoval = false;
      fay.ok(['send', 'circle', 'Still with us, Alice?']);
      await group.click();
      await expect(messages(alice).getByText(/This device has caught up with the group/)).toBeVisible();
      await expect(messages(alice).getByText(REMOVED)).toBeVisible();
      await expect(messages(alice).getByText('A new chapter for the two of us.')).toBeVisible();
      await expect(waiting).toHaveCount(0);
      await expect(messages(alice).getByRole('article', { name: /^You at / }).filter({ hasText: WAITS })).toBeVisible();
      await expect.poll(() => fay.ok(['read', 'circle'])).toContain(WAITS);
    });
    expect(relay.errors).toEqual([]);
  } finally {
    for (const person of people) person.remove();
    await close();
  }
});
