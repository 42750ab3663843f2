// The member's screens in Chromium, with the facilitator played by the `confide` CLI: create a
// profile from an invite link, wait for approval, read and accept the agreement, see the crisis
// resources, exchange messages with the CLI, be muted (the composer says until when and keeps
// the draft), report a message, see the group's members, lock, unlock with a wrong and the
// right passphrase, reload and find the history again. `checkScreen` runs on every screen.

import type { Page } from '@playwright/test';

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson } from './helpers/cli.ts';
import { unlock } from './helpers/member.ts';

/** The member's passphrase: long enough for the rule. */
const PASSPHRASE = 'violet harbour lantern quietly';

/** An agreement long enough to need scrolling before "I agree". */
const AGREEMENT = Array.from(
  { length: 40 },
  (_, i) => `${i + 1}. We listen before we answer, and what is said here stays here.`,
).join('\n');

const CRISIS = 'If you are in crisis, call 116 123 (free, day and night).';

/** The conversation's message list. */
function log(page: Page) {
  return page.getByRole('log', { name: 'Messages' });
}

test('a member joins from a link, is approved, agrees, talks with the facilitator, is muted and comes back', async ({
  page,
  server,
}) => {
  const fay = CliPerson.init(server, 'Fay');
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    fay.ok(['agreement', 'set', 'circle', AGREEMENT]);
    fay.ok(['crisis', 'set', 'circle', CRISIS]);
    const invite = fay.json<{ web_link: string; requires_approval: boolean }>([
      'invite', 'create', 'circle', '--approval',
    ]);
    expect(invite.requires_approval).toBe(true);
    const fragment = new URL(invite.web_link).hash;
    expect(fragment).toMatch(/^#invite=/);

    await test.step('the invite leaves the address at once; the welcome screen asks for a pseudonym and a passphrase', async () => {
      await page.goto(`/${fragment}`);
      await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
      expect(new URL(page.url()).hash).toBe('');
      await page.getByRole('textbox', { name: 'Name in your groups' }).fill('Bob');
      await expect(page.getByText('Not your real name')).toBeVisible();
      await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill('bob');
      await expect(page.getByRole('meter', { name: 'Passphrase strength' })).toBeVisible();
      await expect(page.getByText('cannot be recovered')).toBeVisible();
      await page.getByRole('button', { name: 'Create my profile' }).click();
      await expect(page.getByRole('alert')).toBeVisible();
      await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(PASSPHRASE);
      await expect(page.getByText(/^Strength: (strong|good|fair)/i)).toBeVisible();
      // The refusal of the short one is gone once the passphrase changed.
      await expect(page.getByRole('alert')).toHaveCount(0);
      await checkScreen(page, 'create-profile');
      await page.getByRole('button', { name: 'Create my profile' }).click();
    });

    await test.step('the join screen takes a note; the member then waits until the facilitator approves', async () => {
      await expect(page.getByRole('heading', { name: "You're invited to a group" })).toBeVisible();
      await page.getByRole('textbox', { name: 'A note for the facilitator (optional)' }).fill('Sam told me about the group');
      await checkScreen(page, 'join');
      await page.getByRole('button', { name: 'Join the group' }).click();
      await expect(page.getByRole('heading', { name: 'Waiting for a facilitator' })).toBeVisible();
      await checkScreen(page, 'waiting');

      const requests = fay.json<{ user: string; name: string; note: string }[]>(['mod', 'requests', 'circle']);
      const bob = requests.find((request) => request.name === 'Bob');
      expect(bob?.note).toBe('Sam told me about the group');
      fay.ok(['mod', 'approve', 'circle', bob!.user]);
    });

    await test.step('the agreement is shown in full and "I agree" waits until it was read to the end', async () => {
      await expect(page.getByRole('heading', { name: 'The group agreement' })).toBeVisible();
      const text = page.getByRole('region', { name: 'Agreement text' });
      await expect(text).toContainText('1. We listen before we answer');
      const agree = page.getByRole('button', { name: 'I agree' });
      await expect(agree).toBeDisabled();
      await checkScreen(page, 'agreement');
      await text.focus();
      await page.keyboard.press('End');
      await expect(agree).toBeEnabled();
      await agree.click();
      await expect(log(page)).toBeVisible();
    });

    await test.step('the crisis resources are one tap away', async () => {
      await page.getByRole('button', { name: 'Crisis resources' }).click();
      const dialog = page.getByRole('dialog', { name: 'If you are in crisis' });
      await expect(dialog).toContainText(CRISIS);
      await checkScreen(page, 'crisis-resources');
      await page.keyboard.press('Escape');
      await expect(dialog).toBeHidden();
    });

    await test.step('messages go both ways between the browser and the CLI', async () => {
      // By keyboard: Ctrl+Enter in the message box sends.
      await page.getByRole('textbox', { name: 'Message' }).fill('Hello from the browser');
      await page.getByRole('textbox', { name: 'Message' }).press('Control+Enter');
      await expect(log(page).getByText('Hello from the browser')).toBeVisible();
      await expect(page.getByRole('textbox', { name: 'Message' })).toHaveValue('');
      await expect
        .poll(() => fay.json<{ text: string; name: string }[]>(['read', 'circle']).map((m) => `${m.name}: ${m.text}`))
        .toContain('Bob: Hello from the browser');
      fay.ok(['send', 'circle', 'Welcome, Bob']);
      await expect(log(page).getByText('Welcome, Bob')).toBeVisible();
      // Someone else's text is made inert by the worker: a right-to-left override is shown as
      // U+FFFD and never reverses what follows.
      fay.ok(['send', 'circle', 'see \u202Egnp.exe']);
      await expect(log(page).getByText('see \uFFFDgnp.exe')).toBeVisible();
      await expect(log(page).getByText('\u202E')).toHaveCount(0);
      await checkScreen(page, 'conversation');
    });

    await test.step('a message can be reported with a reason', async () => {
      await log(page)
        .getByRole('article', { name: /^Fay at / })
        .filter({ hasText: 'Welcome, Bob' })
        .getByRole('button', { name: /^More for the message from Fay/ })
        .click();
      await page.getByRole('button', { name: 'Report this message' }).click();
      const dialog = page.getByRole('dialog', { name: 'Report a message' });
      await expect(dialog).toContainText('Welcome, Bob');
      await dialog.getByRole('textbox', { name: 'Why are you reporting it?' }).fill('Just checking reports work');
      await checkScreen(page, 'report');
      await dialog.getByRole('button', { name: 'Send report' }).click();
      await expect(page.getByText('The facilitators will look at your report')).toBeVisible();
    });

    await test.step('muted: the composer says until when, and the draft stays', async () => {
      await page.getByRole('textbox', { name: 'Message' }).fill('a draft I am still writing');
      fay.ok(['mod', 'mute', 'circle', '@Bob', '30m']);
      await expect(page.getByText(/You're muted until .+\. You can still read\./)).toBeVisible();
      await expect(page.getByRole('button', { name: 'Send' })).toBeDisabled();
      await expect(page.getByRole('textbox', { name: 'Message' })).toHaveValue('a draft I am still writing');
      await checkScreen(page, 'muted');
    });

    await test.step('group info lists the members with their roles and a safety number', async () => {
      await page.getByRole('button', { name: 'Group info' }).click();
      const members = page.getByRole('list').filter({ hasText: 'Fay' });
      await expect(members).toContainText('Facilitator');
      await expect(members).toContainText('Bob (you)');
      await checkScreen(page, 'group-info');
      await page.getByRole('button', { name: 'Safety number for Fay' }).click();
      const dialog = page.getByRole('dialog', { name: 'Safety number' });
      await expect(dialog).toContainText(/\d{5}/);
      await expect(dialog.getByRole('img', { name: /QR code/ })).toBeVisible();
      await checkScreen(page, 'safety-number');
      await dialog.getByRole('button', { name: 'Done' }).click();
      // Bob's own name for the group, kept on this device only.
      await page.getByRole('textbox', { name: 'Your name for this group' }).fill('Tuesday circle');
      await page.getByRole('button', { name: 'Save name' }).click();
      await expect(page.getByRole('heading', { name: 'About Tuesday circle' })).toBeVisible();
    });

    await test.step('messages that arrive while the group is not open are counted as new', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      fay.ok(['send', 'circle', 'Are you around on Thursday?']);
      fay.ok(['send', 'circle', 'No pressure either way.']);
      await expect(page.getByRole('button', { name: /^Tuesday circle/ })).toContainText('2 new');
    });

    await test.step('settings lock the profile; a wrong passphrase says so plainly', async () => {
      await page.getByRole('button', { name: 'Settings' }).click();
      await expect(page.getByRole('heading', { name: 'Settings' })).toBeVisible();
      await expect(page.getByRole('combobox', { name: 'Lock by itself when not used for' })).toHaveValue('15');
      await checkScreen(page, 'settings');
      await page.getByRole('button', { name: 'Forget this browser' }).click();
      await expect(page.getByRole('dialog', { name: 'Forget this browser?' })).toBeVisible();
      await checkScreen(page, 'forget-confirm');
      await page.getByRole('button', { name: 'Keep it' }).click();
      await page.getByRole('button', { name: 'Lock now' }).click();
      await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
      await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill('not my passphrase at all');
      await page.getByRole('button', { name: 'Unlock' }).click();
      await expect(page.getByRole('alert')).toHaveText("That passphrase doesn't open this profile. Check it and try again.");
      await checkScreen(page, 'unlock');
    });

    await test.step('after a reload and unlock, the history is back', async () => {
      await page.reload();
      await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
      // By keyboard: Enter in the passphrase field unlocks.
      await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(PASSPHRASE);
      await page.getByRole('textbox', { name: 'Passphrase', exact: true }).press('Enter');
      await expect(page.getByRole('heading', { name: 'Your groups' })).toBeVisible();
      await checkScreen(page, 'groups');
      // The label and the count of new messages survived the reload, from the encrypted store.
      const group = page.getByRole('button', { name: /^Tuesday circle/ });
      await expect(group).toContainText('2 new');
      await group.click();
      await expect(log(page).getByText('No pressure either way.')).toBeVisible();
      await expect(log(page).getByText('Hello from the browser')).toBeVisible();
      await expect(log(page).getByText('Welcome, Bob')).toBeVisible();
      await expect(page.getByText(/You're muted until/)).toBeVisible();
      // The unsent draft came back from the encrypted store.
      await expect(page.getByRole('textbox', { name: 'Message' })).toHaveValue('a draft I am still writing');
      // The title never carries message text.
      expect(await page.title()).toMatch(/^(\(\d+\) )?Confide$/);
      // Opening the group read it, and that is kept too.
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      await expect(group).not.toContainText('new');
      await page.reload();
      await unlock(page, PASSPHRASE);
      await expect(page.getByRole('button', { name: /^Tuesday circle/ })).toBeVisible();
      await expect(page.getByRole('button', { name: /^Tuesday circle/ })).not.toContainText('new');
    });
  } finally {
    fay.remove();
  }
});
