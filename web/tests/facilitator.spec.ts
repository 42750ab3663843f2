// The facilitator's screens (issue 15, plan §2 M6) against the real server, with the members on
// the CLI (plan §6). Fay joins in the browser and the group's founder makes her a facilitator
// (the groups list does not offer "Start a group" yet). She pins the agreement and crisis text
// and makes an approval invite and an open one; Erin joins directly and Dave asks with a note;
// Fay approves Dave from "needs you"; she mutes Dave with a reason and the CLI refuses him; Erin
// reports Dave's message and asks for a facilitator: the urgent request is on top, the report
// shows the verified quote. Then lock (a member is refused), slow mode, retention, open hours,
// roles, delete recent, ban and unban, decline, revoke (a join is refused), and the moderation
// log with its reasons, filtered by action and person. axe runs on every facilitator screen.

import { checkScreen } from './a11y.ts';
import { becomeFacilitator, openSection, panel } from './facilitator/app.ts';
import { CliPerson } from './facilitator/cli.ts';
import { expect, test } from './fixtures.ts';

const AGREEMENT = 'What is shared here stays here. Be kind. Speak for yourself.';
const CRISIS = 'If you are in danger now, call 112. Samaritans: 116 123, any time.';

test('a facilitator runs a group from the browser while members use the CLI', async ({ page, context, server }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  const people: CliPerson[] = [];
  try {
    await test.step('Fay joins in the browser and is made a facilitator', async () => {
      people.push(await becomeFacilitator(page, server));
      await expect(panel(page).getByText('Nothing needs you right now.')).toBeVisible();
    });

    await test.step('Fay pins the agreement and the crisis resources', async () => {
      await openSection(page, 'Settings');
      const tools = panel(page);
      await tools.getByRole('textbox', { name: 'Agreement text' }).fill(AGREEMENT);
      await tools.getByRole('button', { name: 'Publish agreement' }).click();
      await tools.getByRole('button', { name: 'Yes, publish it' }).click();
      await expect(tools.getByRole('status')).toHaveText('Agreement published.');
      await expect(tools.getByText('Version 1 is pinned.')).toBeVisible();
      await tools.getByRole('textbox', { name: 'Crisis resources text' }).fill(CRISIS);
      await tools.getByRole('button', { name: 'Save crisis resources' }).click();
      await expect(tools.getByRole('status')).toHaveText('Crisis resources saved.');
      await expect(tools.locator('blockquote', { hasText: CRISIS })).toBeVisible();
      await checkScreen(page, 'facilitator-settings');
    });

    let approvalLink = '';
    let openInvite = '';
    await test.step('Fay makes an approval invite and an open one, and copies the link', async () => {
      await openSection(page, 'Invites');
      const tools = panel(page);
      await expect(tools.getByRole('checkbox', { name: /approves each person/ })).toBeChecked();
      await tools.getByRole('spinbutton', { name: 'How many people can use it' }).fill('2');
      await tools.getByRole('button', { name: 'Create invite' }).click();
      const link = tools.getByRole('textbox', { name: 'Link to open in a browser' });
      await expect(link).toHaveValue(new RegExp(`^${server.origin}/#invite=confide-invite:`));
      approvalLink = await link.inputValue();
      await tools.getByRole('button', { name: 'Copy link' }).click();
      await expect(tools.getByText('Link copied.')).toBeVisible();
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(approvalLink);

      await tools.getByRole('checkbox', { name: /approves each person/ }).uncheck();
      await tools.getByRole('spinbutton', { name: 'How many people can use it' }).fill('3');
      await tools.getByRole('button', { name: 'Create invite' }).click();
      await expect(link).not.toHaveValue(approvalLink);
      openInvite = await tools.getByRole('textbox', { name: 'Invite text (for the Confide app)' }).inputValue();
      expect(openInvite).toMatch(/^confide-invite:/);
      const list = tools.getByRole('list').filter({ has: page.getByRole('listitem', { name: /^Invite made/ }) });
      await expect(list.getByRole('listitem')).toHaveCount(3); // and Olive's
      await expect(list.getByText('Needs approval · used 0 of 2')).toBeVisible();
      await expect(list.getByText('Joins directly · used 0 of 3')).toBeVisible();
      await checkScreen(page, 'facilitator-invites');
    });

    const erin = CliPerson.init(server, 'Erin');
    people.push(erin);
    const dave = CliPerson.init(server, 'Dave');
    people.push(dave);

    await test.step('Erin joins with the open invite; Dave asks with a note', async () => {
      erin.ok(['join', openInvite, '--label', 'circle']);
      erin.ok(['agreement', 'accept', 'circle', '--yes']);
      dave.ok(['join', approvalLink, '--label', 'circle', '--note', 'Sam from the Tuesday meeting sent me.']);
    });

    await test.step('Fay sees the request with its note and approves Dave', async () => {
      await openSection(page, 'Needs you');
      const tools = panel(page);
      const request = tools.getByRole('listitem', { name: 'Join request from Dave' });
      await expect(request).toBeVisible();
      await expect(request.getByText('Sam from the Tuesday meeting sent me.')).toBeVisible();
      await expect(tools.getByRole('button', { name: /^Needs you 1 waiting/ })).toBeVisible();
      await checkScreen(page, 'facilitator-needs-you-request');
      await request.getByRole('button', { name: 'Approve Dave' }).click();
      await expect(tools.getByRole('status')).toHaveText('Dave can now join.');
      await expect(request).toHaveCount(0);
      await expect(tools.getByText('Nothing needs you right now.')).toBeVisible();
    });

    await test.step('Dave accepts the agreement and writes', async () => {
      dave.ok(['sync']);
      dave.ok(['agreement', 'accept', 'circle', '--yes']);
      dave.ok(['send', 'circle', 'Honestly this group is a waste of time.']);
    });

    await test.step('Fay mutes Dave for an hour with a reason, by keyboard; the CLI refuses him', async () => {
      await openSection(page, 'Members');
      const tools = panel(page);
      const daveRow = tools.getByRole('listitem', { name: 'Dave', exact: true });
      await expect(daveRow.getByText('Member', { exact: true })).toBeVisible();
      await expect(tools.getByRole('listitem', { name: 'Erin', exact: true })).toBeVisible();
      await checkScreen(page, 'facilitator-members');
      await daveRow.getByRole('button', { name: 'Mute: Dave' }).focus();
      await page.keyboard.press('Enter');
      const form = tools.getByRole('form', { name: 'Mute: Dave' });
      await expect(form.getByRole('combobox', { name: 'Mute for' })).toBeFocused();
      await page.keyboard.press('ArrowDown'); // 15 minutes → 1 hour
      await page.keyboard.press('Tab');
      await page.keyboard.type('Dismissive of the others; a pause to cool off.');
      await page.keyboard.press('Tab');
      await expect(form.getByRole('button', { name: 'Mute for 1 hour' })).toBeFocused();
      await page.keyboard.press('Enter');
      await expect(tools.getByRole('status')).toHaveText('Dave is muted.');
      await expect(daveRow.getByText(/^Muted until /)).toBeVisible();

      const refused = dave.run(['send', 'circle', 'let me speak']);
      expect(refused.status, refused.stdout + refused.stderr).not.toBe(0);
      expect(refused.stderr).toContain('muted');
    });

    await test.step('Erin reports Dave’s message and asks for a facilitator', async () => {
      erin.ok(['sync']);
      const read = erin.json(['read', 'circle']) as { number: number; text: string }[];
      const message = read.find((m) => m.text === 'Honestly this group is a waste of time.');
      expect(message, JSON.stringify(read)).toBeDefined();
      erin.ok(['report', 'circle', String(message?.number), 'Putting everyone down.']);
      erin.ok(['send', 'circle', 'Thanks all, see you Tuesday.']);
      erin.ok(['urgent', 'circle', 'Could someone check in with me tonight?']);
    });

    await test.step('Fay’s queue shows the urgent request on top and the verified report', async () => {
      await openSection(page, 'Needs you');
      const tools = panel(page);
      const urgent = tools.getByRole('listitem', { name: 'Urgent request from Erin' });
      await expect(urgent).toBeVisible();
      await expect(urgent.getByText('Could someone check in with me tonight?')).toBeVisible();
      const report = tools.getByRole('listitem', { name: 'Report about Dave' });
      await expect(report.getByText('verified: Dave wrote this')).toBeVisible();
      await expect(report.getByText('Honestly this group is a waste of time.')).toBeVisible();
      await expect(report.getByText('Putting everyone down.')).toBeVisible();
      // Urgent first.
      const items = tools.getByRole('region', { name: 'Needs you' }).getByRole('listitem');
      await expect(items.first()).toHaveAccessibleName('Urgent request from Erin');
      await expect(tools.getByRole('button', { name: /^Needs you 2 waiting, urgent/ })).toBeVisible();
      await checkScreen(page, 'facilitator-needs-you');

      await report.getByRole('button', { name: 'Mark as handled: Report about Dave' }).click();
      await report.getByRole('button', { name: 'Yes, it is handled' }).click();
      await expect(report).toHaveCount(0);
      await expect(urgent).toBeVisible();
    });

    await test.step('the moderation log shows what was done, with reasons, filtered', async () => {
      await openSection(page, 'Moderation log');
      const tools = panel(page);
      const log = tools.getByRole('list', { name: 'Moderation log entries' });
      await expect(log.getByText('Published the agreement')).toBeVisible();
      await expect(log.getByText(/Added\s+Dave/)).toBeVisible();
      await tools.getByRole('combobox', { name: 'Action' }).selectOption({ label: 'Muted' });
      await expect(log.getByRole('listitem')).toHaveCount(1);
      await expect(log.getByRole('listitem')).toContainText('Fay');
      await expect(log.getByRole('listitem')).toContainText('Dave');
      await expect(log.getByText('Reason: Dismissive of the others; a pause to cool off.')).toBeVisible();
      await tools.getByRole('combobox', { name: 'Action' }).selectOption({ label: 'All actions' });
      await tools.getByRole('combobox', { name: 'Person' }).selectOption({ label: 'Erin' });
      await expect(log.getByText('Joined')).toBeVisible();
      await expect(log.getByText(/Muted/)).toHaveCount(0);
      await checkScreen(page, 'facilitator-log');
    });

    await test.step('Fay locks the chat and Erin is refused; slow mode, retention, open hours', async () => {
      await openSection(page, 'Settings');
      const tools = panel(page);
      await tools.getByRole('button', { name: 'Lock the chat' }).click();
      await tools.getByRole('button', { name: 'Yes, lock it' }).click();
      await expect(tools.getByText('The chat is locked: only facilitators can write.')).toBeVisible();
      const refused = erin.run(['send', 'circle', 'is anyone here?']);
      expect(refused.status, refused.stdout + refused.stderr).not.toBe(0);
      expect(refused.stderr).toMatch(/lock/i);
      await tools.getByRole('button', { name: 'Unlock the chat' }).click();
      await tools.getByRole('button', { name: 'Yes, unlock' }).click();
      await expect(tools.getByText('The chat is open: members can write.')).toBeVisible();

      await tools.getByRole('combobox', { name: 'One message per member every' }).selectOption({ label: '30 seconds' });
      await tools.getByRole('button', { name: 'Save slow mode' }).click();
      await expect(tools.getByText('One message per 30 seconds per member.')).toBeVisible();
      await tools.getByRole('combobox', { name: 'Delete messages after' }).selectOption({ label: '7 days' });
      const keeping = tools.getByRole('form', { name: 'Keeping messages' });
      await keeping.getByRole('button', { name: 'Save' }).click();
      await expect(keeping.getByText('Messages are deleted after 7 days.')).toBeVisible();
      await tools.getByRole('checkbox', { name: 'Tuesday' }).check();
      await tools.getByRole('textbox', { name: 'Time zone' }).fill('Europe/Berlin');
      await tools.getByRole('button', { name: 'Save open hours' }).click();
      await expect(tools.getByText(/^Open Tuesday 18:00–22:00 \(Europe\/Berlin\)/)).toBeVisible();
    });

    await test.step('Fay changes a role, bans and unbans, and revokes an invite', async () => {
      await openSection(page, 'Members');
      const tools = panel(page);
      const erinRow = tools.getByRole('listitem', { name: 'Erin', exact: true });
      await erinRow.getByRole('button', { name: 'Make co-facilitator: Erin' }).click();
      await erinRow.getByRole('button', { name: 'Yes, make co-facilitator' }).click();
      await expect(erinRow.getByText('Co-facilitator', { exact: true })).toBeVisible();

      await erinRow.getByRole('button', { name: 'Delete recent messages: Erin' }).click();
      await expect(erinRow.getByRole('spinbutton', { name: 'How many of their latest messages' })).toHaveValue('10');
      await erinRow.getByRole('button', { name: 'Delete them for everyone' }).click();
      await expect(tools.getByRole('status')).toHaveText('Deleted 1 message of Erin.');
      erin.ok(['sync']);
      expect(erin.ok(['read', 'circle'])).not.toContain('Thanks all, see you Tuesday.');

      const daveRow = tools.getByRole('listitem', { name: 'Dave', exact: true });
      await daveRow.getByRole('button', { name: 'Ban: Dave' }).click();
      await daveRow.getByRole('textbox', { name: /^Reason/ }).fill('Kept putting people down after a mute.');
      await daveRow.getByRole('button', { name: 'Remove and ban' }).click();
      await expect(daveRow).toHaveCount(0);
      const banned = tools.getByRole('listitem', { name: 'Banned: Dave' });
      await expect(banned).toBeVisible();
      await banned.getByRole('button', { name: 'Unban: Dave' }).click();
      await banned.getByRole('button', { name: 'Yes, lift the ban' }).click();
      await expect(tools.getByText('Nobody is banned.')).toBeVisible();

      const gus = CliPerson.init(server, 'Gus');
      people.push(gus);
      gus.ok(['join', approvalLink, '--label', 'circle', '--note', 'Just curious.']);
      await openSection(page, 'Needs you');
      const request = panel(page).getByRole('listitem', { name: 'Join request from Gus' });
      await expect(request.getByText('Just curious.')).toBeVisible();
      await request.getByRole('button', { name: 'Decline: Gus' }).click();
      await request.getByRole('button', { name: 'Decline the request' }).click();
      await expect(panel(page).getByRole('status')).toHaveText('Declined Gus.');
      await expect(request).toHaveCount(0);

      await openSection(page, 'Invites');
      const open = panel(page).getByRole('listitem').filter({ hasText: 'Joins directly · used 1 of 3' });
      await open.getByRole('button', { name: /^Revoke/ }).click();
      await open.getByRole('button', { name: 'Yes, revoke it' }).click();
      await expect(open.getByText('Revoked', { exact: true })).toBeVisible();
      const join = gus.run(['join', openInvite, '--label', 'circle2']);
      expect(join.status, join.stdout + join.stderr).not.toBe(0);

      await openSection(page, 'Moderation log');
      await panel(page).getByRole('combobox', { name: 'Action' }).selectOption({ label: 'Removed' });
      const log = panel(page).getByRole('list', { name: 'Moderation log entries' });
      await expect(log.getByRole('listitem')).toHaveCount(1);
      await expect(log.getByRole('listitem')).toContainText('and banned');
      await expect(log.getByText('Reason: Kept putting people down after a mute.')).toBeVisible();
    });

    await test.step('Fay starts a group of her own from the groups screen and has its tools', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      await checkScreen(page, 'groups-start');
      const before = await page.getByRole('navigation', { name: 'Your groups' }).getByRole('listitem').count();
      await page.getByRole('button', { name: 'Start the group' }).click();
      await expect(page.getByRole('button', { name: 'Group info' })).toBeVisible();
      await expect
        .poll(() => page.getByRole('navigation', { name: 'Your groups' }).getByRole('listitem').count())
        .toBe(before + 1);
      await page.getByRole('button', { name: 'Group info' }).click();
      await expect(panel(page)).toBeVisible();
    });
  } finally {
    for (const person of people) person.remove();
  }
});
