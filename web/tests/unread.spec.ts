// "N new" on the groups list comes from the core's read marker: messages that arrive while a
// group is not on screen are counted, the count survives a reload, and the group is read only
// once its newest message was on screen, which is kept too. The other person is the CLI.

import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { joinFromLink, messages, unlock } from './helpers/member.ts';

const PASSPHRASE = 'amber lighthouse sings tonight';

test('new messages are counted until the newest is on screen, across a reload', async ({ page, server }) => {
  const fay = CliPerson.init(server, 'Fay');
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    await joinFromLink(page, invite.web_link, { name: 'Bob', passphrase: PASSPHRASE });
    await expect(messages(page)).toBeVisible();
    const groups = page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' });
    await groups.click();
    const group = page.locator('button.group').first();

    fay.ok(['send', 'circle', 'Are you around on Thursday?']);
    fay.ok(['send', 'circle', 'No pressure either way.']);
    await expect(group).toContainText('2 new');
    await page.reload();
    await unlock(page, PASSPHRASE);
    await expect(group).toContainText('2 new');

    await group.click();
    await expect(messages(page).getByText('No pressure either way.')).toBeVisible();
    await groups.click();
    await expect(group).toBeVisible();
    await expect(group).not.toContainText('new');
    // A second tab reads the count from the core, which has the mark.
    const other = await page.context().newPage();
    await other.goto('/');
    const there = other.locator('button.group').first();
    await expect(there).toBeVisible();
    await expect(there).not.toContainText('new');
    await other.close();
    await page.reload();
    await unlock(page, PASSPHRASE);
    await expect(group).toBeVisible();
    await expect(group).not.toContainText('new');
    expect(fay.json<{ unread: number }[]>(['group', 'list'])[0]?.unread).toBe(0);
  } finally {
    fay.remove();
  }
});
