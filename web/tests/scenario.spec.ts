// The whole story in one test (issue 15, plan §6): three people in three browser contexts and
// one on the CLI, in the same group, against a real server that goes down and comes back.
//
// Fay (facilitator) creates her profile, starts a group from the groups screen, pins the
// agreement and the crisis text, and makes an approval invite and an open one. Bob asks with a
// note and Fay approves him; Carol joins with the open link; both read and accept the agreement;
// Dave joins on the CLI and accepts. Then: they talk; Fay mutes Bob (his draft stays); Fay
// removes Carol (she is told, and sees nothing after); Bob reports Dave's message (Fay sees it
// verified); Bob asks for a facilitator (urgent, on top; Fay is notified by the group's label
// only); Bob reloads and unlocks (history is back); the server stops while Bob writes (waiting
// to send, delivered after the restart); Bob in two tabs.

import type { Page } from '@playwright/test';

import { checkScreen } from './a11y.ts';
import { openSection, panel } from './facilitator/app.ts';
import { CliPerson } from './facilitator/cli.ts';
import { expect, test } from './fixtures.ts';
import { watchedContext } from './helpers/contexts.ts';
import { acceptAgreement, createProfile, joinFromLink, messageBox, messages, send, unlock } from './helpers/member.ts';
import { notificationsOf, spyOnNotifications } from './helpers/notifications.ts';
import { RestartableServer } from './helpers/server.ts';

const AGREEMENT = 'We listen before we answer. What is said here stays here. Speak for yourself.';
const CRISIS = 'If you are in danger now, call 112. Samaritans: 116 123, any time.';

const FAY = 'quiet orchard ladder evening';
const BOB = 'violet harbour lantern quietly';
const CAROL = 'copper meadow whistle slowly';

/** What Dave's CLI has read in the group, as "Name: text". */
function daveReads(dave: CliPerson): string[] {
  return (dave.json(['read', 'circle']) as { name: string; text: string }[]).map((m) => `${m.name}: ${m.text}`);
}

/** The message from `name` with `text` in `page`'s conversation. */
function messageFrom(page: Page, name: string, text: string) {
  return messages(page).getByRole('article', { name: new RegExp(`^${name} at `) }).filter({ hasText: text });
}

/** Goes to the groups screen and opens the (only) group. */
async function openTheGroup(page: Page): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
  await page.getByRole('button', { name: /^Your group/ }).click();
  await expect(messages(page)).toBeVisible();
}

test('a facilitator, two members in the browser and one on the CLI: a whole evening in one group', async ({
  browser,
  context,
  page,
  problems,
  server: fixtureServer,
}) => {
  // The fixtures' server cannot be restarted: this test has its own, with the same certificate.
  const own = await RestartableServer.start(fixtureServer);
  const origin = own.server.origin;
  const dave = CliPerson.init(own.server, 'Dave');
  await spyOnNotifications(context, origin);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  const bobContext = await watchedContext(browser, origin, problems);
  const carolContext = await watchedContext(browser, origin, problems);
  const bob = await bobContext.newPage();
  const carol = await carolContext.newPage();
  const fay = page;
  try {
    await test.step('Fay creates her profile and starts a group from the groups screen', async () => {
      await fay.goto(`${origin}/`);
      await createProfile(fay, 'Fay', FAY);
      await expect(fay.getByRole('heading', { name: 'Your groups' })).toBeVisible();
      await expect(fay.getByText("You're not in a group yet.")).toBeVisible();
      await checkScreen(fay, 'groups-empty');
      await fay.getByRole('button', { name: 'Start the group' }).click();
      await fay.getByRole('button', { name: 'Group info' }).click();
      await expect(panel(fay)).toBeVisible();
      await expect(panel(fay).getByText('Nothing needs you right now.')).toBeVisible();
    });

    await test.step('Fay sets the agreement and the crisis text in Settings', async () => {
      await openSection(fay, 'Settings');
      const tools = panel(fay);
      await tools.getByRole('textbox', { name: 'Agreement text' }).fill(AGREEMENT);
      await tools.getByRole('button', { name: 'Publish agreement' }).click();
      await tools.getByRole('button', { name: 'Yes, publish it' }).click();
      await expect(tools.getByRole('status')).toHaveText('Agreement published.');
      await tools.getByRole('textbox', { name: 'Crisis resources text' }).fill(CRISIS);
      await tools.getByRole('button', { name: 'Save crisis resources' }).click();
      await expect(tools.getByRole('status')).toHaveText('Crisis resources saved.');
    });

    let approvalLink = '';
    let openLink = '';
    await test.step('Fay makes an approval invite and an open one and copies their links', async () => {
      await openSection(fay, 'Invites');
      const tools = panel(fay);
      const link = tools.getByRole('textbox', { name: 'Link to open in a browser' });
      await expect(tools.getByRole('checkbox', { name: /approves each person/ })).toBeChecked();
      await tools.getByRole('button', { name: 'Create invite' }).click();
      await expect(link).toHaveValue(new RegExp(`^${origin}/#invite=confide-invite:`));
      await tools.getByRole('button', { name: 'Copy link' }).click();
      approvalLink = await fay.evaluate(() => navigator.clipboard.readText());
      expect(approvalLink).toBe(await link.inputValue());

      await tools.getByRole('checkbox', { name: /approves each person/ }).uncheck();
      await tools.getByRole('spinbutton', { name: 'How many people can use it' }).fill('5');
      await tools.getByRole('button', { name: 'Create invite' }).click();
      await expect(link).not.toHaveValue(approvalLink);
      await tools.getByRole('button', { name: 'Copy link' }).click();
      openLink = await fay.evaluate(() => navigator.clipboard.readText());
      expect(openLink).toMatch(new RegExp(`^${origin}/#invite=confide-invite:`));
    });

    await test.step('Bob opens the approval link, leaves a note and waits; Fay approves him', async () => {
      await joinFromLink(bob, approvalLink, { name: 'Bob', passphrase: BOB, note: 'Sam from work told me about it.' });
      await expect(bob.getByRole('heading', { name: 'Waiting for a facilitator' })).toBeVisible();
      await openSection(fay, 'Needs you');
      const request = panel(fay).getByRole('listitem', { name: 'Join request from Bob' });
      await expect(request.getByText('Sam from work told me about it.')).toBeVisible();
      await request.getByRole('button', { name: 'Approve Bob' }).click();
      await expect(panel(fay).getByRole('status')).toHaveText('Bob can now join.');
    });

    await test.step('Carol joins with the open link; Bob and Carol read and accept the agreement', async () => {
      await joinFromLink(carol, openLink, { name: 'Carol', passphrase: CAROL });
      await acceptAgreement(carol, AGREEMENT);
      await acceptAgreement(bob, AGREEMENT);
    });

    await test.step('Dave joins on the CLI with the open link and accepts the agreement', async () => {
      dave.ok(['join', openLink, '--label', 'circle']);
      // The agreement's text reaches a new member when a facilitator's device (Fay's tab) posts
      // it again to the epoch Dave's join began: Dave reads it first, as a person would.
      await expect
        .poll(() => (dave.json(['agreement', 'show', 'circle']) as { text?: string } | null)?.text)
        .toBe(AGREEMENT);
      dave.ok(['agreement', 'accept', 'circle', '--yes']);
      await expect.poll(() => (dave.json(['members', 'circle']) as unknown[]).length).toBe(4);
    });

    await test.step('1. they talk: Bob and Carol in the browser, each with Dave on the CLI', async () => {
      await send(bob, 'Hi Carol, Bob here.');
      await expect(messageFrom(carol, 'Bob', 'Hi Carol, Bob here.')).toBeVisible();
      await send(carol, 'Hi Bob, good to see you.');
      await expect(messageFrom(bob, 'Carol', 'Hi Bob, good to see you.')).toBeVisible();
      await expect.poll(() => daveReads(dave)).toEqual(
        expect.arrayContaining(['Bob: Hi Carol, Bob here.', 'Carol: Hi Bob, good to see you.']),
      );
      dave.ok(['send', 'circle', 'Evening both, Dave on the terminal.']);
      await expect(messageFrom(bob, 'Dave', 'Evening both, Dave on the terminal.')).toBeVisible();
      await expect(messageFrom(carol, 'Dave', 'Evening both, Dave on the terminal.')).toBeVisible();
    });

    await test.step('2. Fay mutes Bob: his composer says until when, and his draft stays', async () => {
      await messageBox(bob).fill('a draft I am still writing');
      await openSection(fay, 'Members');
      const bobRow = panel(fay).getByRole('listitem', { name: 'Bob', exact: true });
      await bobRow.getByRole('button', { name: 'Mute: Bob' }).click();
      await bobRow.getByRole('form', { name: 'Mute: Bob' }).getByRole('button', { name: /^Mute for / }).click();
      await expect(panel(fay).getByRole('status')).toHaveText('Bob is muted.');
      await expect(bob.getByText(/You're muted until .+\. You can still read\./)).toBeVisible();
      await expect(bob.getByRole('button', { name: 'Send' })).toBeDisabled();
      await expect(messageBox(bob)).toHaveValue('a draft I am still writing');
    });

    await test.step('3. Fay removes Carol: Carol is told, and what Dave sends next never reaches her', async () => {
      const carolRow = panel(fay).getByRole('listitem', { name: 'Carol', exact: true });
      await carolRow.getByRole('button', { name: 'Remove: Carol' }).click();
      await expect(carolRow.getByRole('form', { name: 'Remove: Carol' })).toBeVisible();
      await checkScreen(fay, 'facilitator-remove');
      await carolRow.getByRole('button', { name: 'Remove from the group' }).click();
      await expect(panel(fay).getByRole('status')).toHaveText('Carol was removed.');
      await expect(carol.getByText("You're no longer in this group.")).toBeVisible();
      await expect(messageBox(carol)).toHaveCount(0);
      dave.ok(['send', 'circle', 'Honestly, you lot are a waste of my time.']);
      // Bob has it, so it was delivered; Carol, removed before it was sent, does not.
      await expect(messageFrom(bob, 'Dave', 'Honestly, you lot are a waste of my time.')).toBeVisible();
      await expect(messages(carol).getByText('Honestly, you lot are a waste of my time.')).toHaveCount(0);
      await expect(messages(carol).getByText('Evening both, Dave on the terminal.')).toBeVisible();
    });

    await test.step("4. Bob reports Dave's message with a reason; Fay sees it verified, with the quote", async () => {
      await messageFrom(bob, 'Dave', 'Honestly, you lot are a waste of my time.')
        .getByRole('button', { name: /^More for the message from Dave/ })
        .click();
      await bob.getByRole('button', { name: 'Report this message' }).click();
      const dialog = bob.getByRole('dialog', { name: 'Report a message' });
      await dialog.getByRole('textbox', { name: 'Why are you reporting it?' }).fill('Putting everyone down.');
      await dialog.getByRole('button', { name: 'Send report' }).click();
      await expect(bob.getByText('The facilitators will look at your report')).toBeVisible();

      await openSection(fay, 'Needs you');
      const report = panel(fay).getByRole('listitem', { name: 'Report about Dave' });
      await expect(report.getByText('verified: Dave wrote this')).toBeVisible();
      await expect(report.getByText('Honestly, you lot are a waste of my time.')).toBeVisible();
      await expect(report.getByText('Putting everyone down.')).toBeVisible();
    });

    const URGENT = 'Carol is gone and I am not doing well tonight.';
    await test.step('5. Bob asks for a facilitator: urgent and on top for Fay, who is notified without the text', async () => {
      // Fay looks at her groups, not at this group: the app notifies her.
      await fay.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      expect(await notificationsOf(fay)).toEqual([]);

      await bob.getByRole('button', { name: 'I need a facilitator' }).click();
      const dialog = bob.getByRole('dialog', { name: 'I need a facilitator' });
      await dialog.getByRole('textbox', { name: "What's going on? (optional)" }).fill(URGENT);
      await checkScreen(bob, 'ask-facilitator');
      await dialog.getByRole('button', { name: 'Send request' }).click();
      await expect(bob.getByText('Your request was sent.')).toBeVisible();

      await expect
        .poll(async () => (await notificationsOf(fay)).map((n) => n.title))
        .toContain('Someone asked for a facilitator in Your group');
      const shown = await notificationsOf(fay);
      for (const notification of shown) {
        expect(['service-worker', 'page']).toContain(notification.via);
        expect(JSON.stringify(notification)).not.toContain('not doing well');
        expect(JSON.stringify(notification)).not.toContain('Bob');
      }

      await fay.getByRole('button', { name: /^Your group/ }).click();
      await fay.getByRole('button', { name: 'Group info' }).click();
      await openSection(fay, 'Needs you');
      const tools = panel(fay);
      const urgent = tools.getByRole('listitem', { name: 'Urgent request from Bob' });
      await expect(urgent.getByText(URGENT)).toBeVisible();
      const items = tools.getByRole('region', { name: 'Needs you' }).getByRole('listitem');
      await expect(items.first()).toHaveAccessibleName('Urgent request from Bob');
      await expect(tools.getByRole('listitem', { name: 'Report about Dave' })).toBeVisible();
    });

    await test.step('6. Bob reloads, unlocks, and his history is back', async () => {
      await bob.reload();
      await unlock(bob, BOB);
      await bob.getByRole('button', { name: /^Your group/ }).click();
      await expect(messageFrom(bob, 'Carol', 'Hi Bob, good to see you.')).toBeVisible();
      await expect(messageFrom(bob, 'Dave', 'Honestly, you lot are a waste of my time.')).toBeVisible();
      await expect(bob.getByText(/You're muted until/)).toBeVisible();
    });

    await test.step('7. the server stops while Bob writes: waiting to send, delivered after the restart', async () => {
      // Bob may write again.
      await openSection(fay, 'Members');
      const bobRow = panel(fay).getByRole('listitem', { name: 'Bob', exact: true });
      await bobRow.getByRole('button', { name: 'Unmute: Bob' }).click();
      await bobRow.getByRole('button', { name: 'Yes, unmute' }).click();
      await expect(panel(fay).getByRole('status')).toHaveText('Bob can write again.');
      await expect(bob.getByText(/You're muted until/)).toHaveCount(0);
      await expect(bob.getByRole('button', { name: 'Send' })).toBeEnabled();

      await own.stop();
      await expect(bob.getByRole('banner').getByRole('status')).toHaveText('Offline');
      await expect(bob.getByText("You're offline. What you send will wait and go out when you're back.")).toBeVisible();
      await messageBox(bob).fill('Sent while the server was down.');
      await messageBox(bob).press('Control+Enter');
      // The core keeps it (encrypted, not yet sealed) and the page shows it as waiting.
      const waiting = messages(bob).getByRole('article', { name: 'Your message, waiting to send' });
      await expect(waiting).toContainText('Sent while the server was down.');
      await expect(messageBox(bob)).toHaveValue('');
      await checkScreen(bob, 'scenario-waiting-to-send');
      await own.restart();
      await expect(bob.getByRole('banner').getByRole('status')).toHaveCount(0, { timeout: 60_000 });
      await expect(waiting).toHaveCount(0);

      await expect(messageFrom(bob, 'You', 'Sent while the server was down.')).toBeVisible();
      await expect.poll(() => daveReads(dave)).toContain('Bob: Sent while the server was down.');
    });

    await test.step('8. Bob in two tabs: both get the news, the second one sends, nobody is locked out', async () => {
      const second = await bobContext.newPage();
      await second.goto('/');
      await expect(second.getByRole('heading', { name: 'Your groups' })).toBeVisible();
      await expect(second.getByRole('heading', { name: 'Confide is open in another tab' })).toHaveCount(0);
      await openTheGroup(second);
      dave.ok(['send', 'circle', 'Glad the server is back.']);
      await expect(messageFrom(bob, 'Dave', 'Glad the server is back.')).toBeVisible();
      await expect(messageFrom(second, 'Dave', 'Glad the server is back.')).toBeVisible();
      await send(second, 'Writing from my other tab.');
      await expect.poll(() => daveReads(dave)).toContain('Bob: Writing from my other tab.');
      // The first tab shows it too, without reopening the group.
      await expect(messages(bob).getByText('Writing from my other tab.')).toBeVisible();
      for (const tab of [bob, second]) {
        await expect(tab.getByRole('heading', { name: 'Confide is open in another tab' })).toHaveCount(0);
        await expect(tab.getByRole('heading', { name: 'Welcome back' })).toHaveCount(0);
      }
      await second.close();
    });

    // The screens only this story reaches are checked where they show: the empty groups list,
    // the remove form, the "I need a facilitator" dialog, the offline composer; and here:
    await test.step('9. the screens only this story reaches pass axe', async () => {
      // Carol after her removal: the conversation says so and has no composer.
      await checkScreen(carol, 'scenario-removed');
      // Her groups list says she is no longer in the group.
      await carol.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      await expect(carol.getByText("You're no longer in this group")).toBeVisible();
      await checkScreen(carol, 'scenario-removed-groups');
    });
  } finally {
    await bobContext.close();
    await carolContext.close();
    dave.remove();
    await own.remove();
  }
});

