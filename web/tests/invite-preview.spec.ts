// Before joining, the join screen says what the link says; when the person asks, who invited
// and whether a facilitator must approve, from the group's log verified against the link (the
// core's `previewInvite` with `check`); an invite that cannot be used says so instead of
// offering to join. Group info tells members when the group
// is open and how long messages are kept, from the core's `settings`. The facilitator is played
// by the `confide` CLI.

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { createProfile, messages } from './helpers/member.ts';

/** The member's passphrase: long enough for the rule. */
const PASSPHRASE = 'copper meadow whistles softly';

test('the join screen says what the link says, names who invited when asked, and joining still asks', async ({
  page,
  server,
}) => {
  const fay = CliPerson.init(server, 'Fay');
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle', '--approval']);
    await page.goto(`/${new URL(invite.web_link).hash}`);

    await test.step('before there is a profile, only what the link says', async () => {
      const invited = page.getByRole('group', { name: 'Your invite' });
      await expect(invited).toContainText('You have an invite to a group.');
      await expect(invited).toContainText('A facilitator will approve your request');
      await expect(invited).toContainText('you can check who invited you');
      await createProfile(page, 'Bob', PASSPHRASE);
    });

    await test.step('then the link again, and on asking the verified inviter and the approval', async () => {
      await expect(page.getByRole('heading', { name: "You're invited to a group" })).toBeVisible();
      const about = page.getByRole('group', { name: 'About this invite' });
      await expect(about).toContainText('has not been checked yet');
      await expect(about).toContainText('The link says: A facilitator will approve your request');
      await expect(about).not.toContainText('Fay');
      await page.getByRole('button', { name: 'Check who invited me' }).click();
      await expect(about).toContainText('Fay (facilitator) invited you to join their group of 1 person.');
      await expect(about).not.toContainText('The link says');
      await expect(about).toContainText('A facilitator will approve your request before you can read the group.');
      await expect(about).toContainText('The invite can be used until');
      await checkScreen(page, 'join-preview');
      expect(fay.json<unknown[]>(['mod', 'requests', 'circle'])).toEqual([]);
    });

    await test.step('joining still asks, with the note', async () => {
      await page.getByRole('textbox', { name: 'A note for the facilitator (optional)' }).fill('Sam sent me');
      await page.getByRole('button', { name: 'Join the group' }).click();
      await expect(page.getByRole('heading', { name: 'Waiting for a facilitator' })).toBeVisible();
      const requests = fay.json<{ name: string; note: string }[]>(['mod', 'requests', 'circle']);
      expect(requests.map((r) => `${r.name}: ${r.note}`)).toEqual(['Bob: Sam sent me']);
    });
  } finally {
    fay.remove();
  }
});

test('an invite that was withdrawn says so on the join screen, with no way to join', async ({ page, server }) => {
  const fay = CliPerson.init(server, 'Fay');
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    const [made] = fay.json<{ invite: { id: string } }[]>(['invite', 'list', 'circle']);
    fay.ok(['invite', 'revoke', 'circle', made!.invite.id]);
    await page.goto(`/${new URL(invite.web_link).hash}`);
    await createProfile(page, 'Bob', PASSPHRASE);
    await expect(page.getByRole('heading', { name: "You're invited to a group" })).toBeVisible();
    await page.getByRole('button', { name: 'Check who invited me' }).click();
    await expect(page.getByRole('alert')).toHaveText(
      'This invite was withdrawn by a facilitator. Ask the person who sent it for a new one.',
    );
    await expect(page.getByRole('button', { name: 'Join the group' })).toHaveCount(0);
    await checkScreen(page, 'join-unusable');
    await page.getByRole('button', { name: 'Back to my groups' }).click();
    await expect(page.getByRole('heading', { name: 'Your groups' })).toBeVisible();
  } finally {
    fay.remove();
  }
});

test('group info tells members when the group is open and how long messages are kept', async ({ page, server }) => {
  const fay = CliPerson.init(server, 'Fay');
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    fay.ok([
      'mod', 'open-hours', 'circle', '--tz', 'Europe/Berlin',
      '--window', 'mon 18:00-22:00', '--window', 'tue 18:00-22:00',
      '--window', 'wed 18:00-22:00', '--window', 'thu 18:00-22:00',
    ]);
    fay.ok(['mod', 'retention', 'circle', '30d']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    await page.goto(`/${new URL(invite.web_link).hash}`);
    await createProfile(page, 'Bob', PASSPHRASE);
    await expect(page.getByRole('group', { name: 'About this invite' })).toContainText(
      'You can join straight away: no approval is needed.',
    );
    // No approval: no note to write.
    await expect(page.getByRole('textbox', { name: 'A note for the facilitator (optional)' })).toHaveCount(0);
    await page.getByRole('button', { name: 'Join the group' }).click();
    await expect(messages(page)).toBeVisible();
    await page.getByRole('button', { name: 'Group info' }).click();
    const how = page.getByRole('group', { name: 'How this group works' });
    await expect(how).toContainText(
      'This group is open Mon–Thu 18:00–22:00 (Europe/Berlin time); messages are kept 30 days.',
    );
    await expect(how).toContainText('Members cannot message each other privately here.');
    // And no button offers what the group does not allow.
    await expect(page.getByRole('button', { name: /^Message privately/ })).toHaveCount(0);
    await checkScreen(page, 'group-info-settings');
  } finally {
    fay.remove();
  }
});
