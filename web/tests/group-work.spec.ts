// The group-work tools in the browser (issue 17), with real servers and real browsers: Fay runs
// the group from her browser (Tokyo time) and two members join in theirs, Mia (Kolkata time) and
// Noor (London time); the group's founder Olive is the CLI. Fay publishes a weekly meeting and
// Mia sees the next one in her own time zone, then a meeting soon brings the reminder banner.
// Fay opens a check-in round with a turn order: Mia answers, Noor passes, and both see the one
// block. With content-warning topics published, Mia hides "Grief": Noor's tagged message shows
// only the warning until Mia presses Show, and a warning Fay adds to another message hides that
// one too. Resources are published and found by search, their link opened only by its button
// (rel=noopener noreferrer). Mia writes a safety plan: it is there after a reload and unlock, in
// the crisis dialog too, and nowhere for the others or on the server. axe runs on every new
// screen, which also gives the screenshots.

import type { Browser, BrowserContext, Page } from '@playwright/test';

import { checkScreen } from './a11y.ts';
import { becomeFacilitator, openSection, panel } from './facilitator/app.ts';
import type { CliPerson } from './facilitator/cli.ts';
import { expect, test } from './fixtures.ts';
import { watch } from './helpers/contexts.ts';
import { joinFromLink, messageBox, messages, send, unlock } from './helpers/member.ts';
import { scan, token } from './privacy/scan.ts';

/** Fay's browser: the group's time zone. */
const FAY_ZONE = 'Asia/Tokyo';
/** Mia's: five and a half hours behind Tokyo's, and neither has summer time. */
const MIA_ZONE = 'Asia/Kolkata';
const NOOR_ZONE = 'Europe/London';
const MIA_PASSPHRASE = 'amber lighthouse over the quiet bay';
const NOOR_PASSPHRASE = 'seven paper boats drift downstream';

test.use({ timezoneId: FAY_ZONE, locale: 'en-US' });

/** The date and the 24-hour time of `at` in `timeZone`: "2026-12-07", "18:00", "Monday". */
function local(at: Date, timeZone: string): { date: string; time: string; weekday: string } {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      weekday: 'long',
      hourCycle: 'h23',
    })
      .formatToParts(at)
      .map((part) => [part.type, part.value]),
  );
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}`, weekday: parts.weekday ?? '' };
}

/** A member's browser: its own context in its own time zone, watched like the fixtures' own. */
async function memberContext(browser: Browser, baseURL: string, timezoneId: string, problems: string[]): Promise<BrowserContext> {
  const context = await browser.newContext({ baseURL, timezoneId, locale: 'en-US' });
  await watch(context, problems);
  return context;
}

/** The group's info screen, from the conversation. */
async function openInfo(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Group info' }).click();
  await expect(page.getByRole('heading', { name: /^About / })).toBeVisible();
}

/** Back to the conversation from the group's info. */
async function backToConversation(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Back to the conversation' }).click();
  await expect(messages(page)).toBeVisible();
}

/** The check-in round's block in the conversation. */
function roundBlock(page: Page) {
  return messages(page).getByRole('article', { name: 'Check-in round' });
}

test('meetings, a check-in round, content warnings, resources and a safety plan in the browser', async ({
  page,
  browser,
  server,
  problems,
}) => {
  const fay = page;
  const contexts: BrowserContext[] = [];
  let olive: CliPerson | undefined;
  try {
    await test.step('Fay is made a facilitator; Mia and Noor join from links in their own browsers', async () => {
      olive = await becomeFacilitator(fay, server);
      for (const [name, zone, passphrase] of [
        ['Mia', MIA_ZONE, MIA_PASSPHRASE],
        ['Noor', NOOR_ZONE, NOOR_PASSPHRASE],
      ] as const) {
        const invite = olive.json(['invite', 'create', 'circle']) as { web_link: string };
        const context = await memberContext(browser, server.origin, zone, problems);
        contexts.push(context);
        const member = await context.newPage();
        await joinFromLink(member, invite.web_link, { name, passphrase });
        await expect(messages(member)).toBeVisible();
      }
      await expect.poll(() => (olive?.json(['members', 'circle']) as unknown[]).length).toBe(4);
    });
    const mia = contexts[0]!.pages()[0]!;
    const noor = contexts[1]!.pages()[0]!;

    // The weekly meeting is two days from now in Tokyo, so that it is neither today nor past.
    const meetingDay = local(new Date(Date.now() + 2 * 86_400_000), FAY_ZONE).weekday;

    await test.step('Fay publishes a weekly meeting at 18:00 Tokyo time with a video link', async () => {
      await openSection(fay, 'Meetings');
      const tools = panel(fay);
      const weekly = tools.getByRole('form', { name: 'Add a weekly meeting' });
      await weekly.getByRole('combobox', { name: 'Day' }).selectOption({ label: meetingDay });
      await weekly.getByLabel('Starts at').fill('18:00');
      await weekly.getByRole('spinbutton', { name: 'Length in minutes' }).fill('90');
      await weekly.getByRole('button', { name: 'Add weekly meeting' }).click();
      await expect(tools.getByText(`Every ${meetingDay}, 18:00–19:30`, { exact: true })).toBeVisible();
      const schedule = tools.getByRole('form', { name: 'The schedule' });
      await expect(schedule.getByRole('textbox', { name: 'Time zone of the meetings' })).toHaveValue(FAY_ZONE);
      await schedule.getByRole('textbox', { name: 'Video link (optional)' }).fill('https://meet.example.org/circle');
      await schedule.getByRole('textbox', { name: 'Note for members (optional)' }).fill('Bring a cup of tea.');
      await schedule.getByRole('button', { name: 'Publish the schedule' }).click();
      await expect(tools.getByRole('status').first()).toHaveText('Schedule published.');
      await checkScreen(fay, 'facilitator-meetings');
    });

    await test.step('Mia sees the next meeting in her own time zone, the schedule in the group’s', async () => {
      await openInfo(mia);
      const meetings = mia.getByRole('region', { name: 'Meetings' });
      // 18:00 in Tokyo is 14:30 in Kolkata, the same day.
      await expect(meetings.getByText(new RegExp(`^Next meeting: ${meetingDay}, .* at 2:30\\sPM \\(in \\d+ (hours|days)\\)$`))).toBeVisible();
      // (Chromium names Kolkata by its older name.)
      await expect(meetings.getByText(/^That is in your time zone \(Asia\/(Kolkata|Calcutta)\)\.$/)).toBeVisible();
      await expect(meetings.getByRole('heading', { name: `When the group meets (${FAY_ZONE} time)` })).toBeVisible();
      await expect(meetings.getByText(`Every ${meetingDay}, 18:00–19:30`, { exact: true })).toBeVisible();
      // The link is shown whole, as text: no anchor anyone could follow by mistake.
      await expect(meetings.getByText('https://meet.example.org/circle', { exact: true })).toBeVisible();
      await expect(meetings.getByRole('link')).toHaveCount(0);
      await expect(meetings.getByRole('button', { name: 'Open the video link' })).toBeVisible();
      await expect(meetings.getByText('Bring a cup of tea.')).toBeVisible();
      await checkScreen(mia, 'meetings');
      // Fay sees the same meeting at her own 6:00 PM.
      await fay.getByRole('button', { name: 'Back to the conversation' }).click();
      await openInfo(fay);
      await expect(
        fay.getByRole('region', { name: 'Meetings' }).getByText(new RegExp(`^Next meeting: ${meetingDay}, .* at 6:00\\sPM`)),
      ).toBeVisible();
    });

    await test.step('a meeting in ten minutes brings the reminder banner into the open conversation', async () => {
      await backToConversation(mia);
      const reminder = mia.getByText(/^Your group (meets at|is meeting now)/);
      await expect(reminder).toHaveCount(0);
      const soon = local(new Date(Date.now() + 10 * 60_000), FAY_ZONE);
      await openSection(fay, 'Meetings');
      const single = panel(fay).getByRole('form', { name: 'Add a single meeting' });
      await single.getByLabel('Date').fill(soon.date);
      await single.getByLabel('Starts at').fill(soon.time);
      await single.getByRole('spinbutton', { name: 'Length in minutes' }).fill('45');
      await single.getByRole('button', { name: 'Add single meeting' }).click();
      await panel(fay).getByRole('button', { name: 'Publish the schedule' }).click();
      await expect(panel(fay).getByRole('status').first()).toHaveText('Schedule published.');
      await expect(reminder).toHaveText(/^Your group meets at \d{1,2}:\d{2}\s(AM|PM) \(in \d+ minutes\)\.$/);
      await expect(mia.getByRole('status').filter({ has: reminder }).getByRole('button', { name: 'Open the video link' })).toBeVisible();
      // Away from the conversation too (Fay is in the group's info), with the way to the group.
      const elsewhere = fay.getByRole('status').filter({ has: fay.getByRole('button', { name: /^Open the group/ }) });
      await expect(elsewhere).toContainText(/Your group meets at \d{1,2}:\d{2}\s(AM|PM) \(in \d+ minutes\)\./);
    });

    await test.step('Fay opens a check-in round with a turn order; Mia answers and Noor passes', async () => {
      await fay.getByRole('button', { name: 'Back to the conversation' }).click();
      await fay.getByRole('button', { name: 'Start a check-in round' }).click();
      const dialog = fay.getByRole('dialog', { name: 'Start a check-in round' });
      await dialog.getByRole('textbox', { name: 'Question for the round' }).fill('How was your week, in one word?');
      await dialog.getByRole('checkbox', { name: 'Mia' }).check();
      await dialog.getByRole('checkbox', { name: 'Noor' }).check();
      await expect(dialog.getByText('Order: Mia, Noor')).toBeVisible();
      await dialog.getByRole('combobox', { name: 'The round closes' }).selectOption({ label: 'In 1 hour' });
      await checkScreen(fay, 'round-start');
      await dialog.getByRole('button', { name: 'Start the round' }).click();
      await expect(dialog).toBeHidden();
      await expect(roundBlock(fay).getByText('How was your week, in one word?')).toBeVisible();

      const block = roundBlock(mia);
      await expect(block.getByText('How was your week, in one word?')).toBeVisible();
      await expect(block.getByText(/Open until/)).toBeVisible();
      await expect(block.getByText('Still to answer, in turn: you, Noor.')).toBeVisible();
      await block.getByRole('button', { name: 'Answer in the check-in round' }).click();
      const answer = mia.getByRole('dialog', { name: 'Your answer' });
      await answer.getByRole('textbox', { name: 'Your answer' }).fill('Tired, but hopeful.');
      await answer.getByRole('button', { name: 'Send my answer' }).click();
      await expect(answer).toBeHidden();

      await expect(roundBlock(noor).getByText('Still to answer, in turn: you.')).toBeVisible();
      await roundBlock(noor).getByRole('button', { name: 'Pass in the check-in round' }).click();
    });

    await test.step('both see the one block: the prompt, the answer, and the pass as "passed"', async () => {
      for (const [member, self, other] of [
        [mia, 'You', 'Noor'],
        [noor, 'Mia', 'You'],
      ] as const) {
        const answers = roundBlock(member).getByRole('list', { name: 'Answers' }).getByRole('listitem');
        await expect(answers).toHaveCount(2);
        await expect(answers.nth(0)).toHaveText(new RegExp(`^\\s*${self}\\s+Tired, but hopeful\\.(\\s|$)`));
        await expect(answers.nth(1)).toHaveText(new RegExp(`^\\s*${other}\\s+passed\\s*$`));
        // The answer and the pass are in the block, not messages of their own.
        await expect(messages(member).getByText('Tired, but hopeful.')).toHaveCount(1);
        await expect(messages(member).getByRole('article', { name: /^(Mia|Noor|You) at / })).toHaveCount(0);
      }
      await expect(roundBlock(fay).getByRole('list', { name: 'Answers' }).getByRole('listitem')).toHaveCount(2);
      await checkScreen(noor, 'round');
      // An answer can be reported like any message (and a facilitator can delete it).
      await expect(roundBlock(fay).getByRole('button', { name: 'Delete… the answer from Mia' })).toBeVisible();
      await expect(roundBlock(mia).getByRole('button', { name: /^Report the answer/ })).toHaveCount(0);
      await roundBlock(noor).getByRole('button', { name: 'Report the answer from Mia' }).click();
      const report = noor.getByRole('dialog', { name: 'Report a message' });
      await expect(report.getByText('Tired, but hopeful.')).toBeVisible();
      await report.getByRole('button', { name: 'Cancel' }).click();
      await expect(report).toBeHidden();
      await roundBlock(fay).getByRole('button', { name: 'Close the round' }).click();
      await expect(roundBlock(mia).getByText(/Closed\./)).toBeVisible();
      await expect(roundBlock(mia).getByRole('button', { name: /in the check-in round/ })).toHaveCount(0);
    });

    await test.step('Fay publishes content-warning topics', async () => {
      await openInfo(fay);
      await openSection(fay, 'Content warnings');
      const tools = panel(fay);
      for (const topic of ['Grief', 'Self-harm']) {
        await tools.getByRole('textbox', { name: 'New topic' }).fill(topic);
        await tools.getByRole('button', { name: 'Add topic' }).click();
      }
      await tools.getByRole('button', { name: 'Publish the topics' }).click();
      await expect(tools.getByRole('status').first()).toHaveText('Topics published.');
      await checkScreen(fay, 'facilitator-warnings');
      await fay.getByRole('button', { name: 'Back to the conversation' }).click();
    });

    await test.step('Mia hides "Grief"; Noor’s message tagged Grief shows only the warning until Show', async () => {
      await openInfo(mia);
      const hiding = mia.getByRole('form', { name: 'Topics I hide' });
      await hiding.getByRole('checkbox', { name: 'Grief' }).check();
      await hiding.getByRole('button', { name: 'Save topics I hide' }).click();
      await expect(hiding.getByRole('status')).toHaveText(/^Saved\. Messages with these warnings stay hidden/);
      await backToConversation(mia);

      await messageBox(noor).fill('My dad died two years ago today.');
      await noor.getByRole('button', { name: 'Content warning' }).click();
      await noor.getByRole('group', { name: 'Put a content warning on your message' }).getByRole('checkbox', { name: 'Grief' }).check();
      await expect(noor.getByText('Your message will carry: Content warning: Grief.')).toBeVisible();
      await messageBox(noor).press('Control+Enter');
      await expect(messageBox(noor)).toHaveValue('');

      const tagged = messages(mia).getByRole('article', { name: /^Noor at / });
      await expect(tagged.getByText('Content warning: Grief')).toBeVisible();
      await expect(tagged.getByText('My dad died two years ago today.')).toHaveCount(0);
      await checkScreen(mia, 'content-warning');
      await tagged.getByRole('button', { name: /^Show the message from Noor/ }).click();
      await expect(tagged.getByText('My dad died two years ago today.')).toBeVisible();
      // Fay hides nothing: she reads it at once, under its warning.
      const forFay = messages(fay).getByRole('article', { name: /^Noor at / });
      await expect(forFay.getByText('Content warning: Grief')).toBeVisible();
      await expect(forFay.getByText('My dad died two years ago today.')).toBeVisible();
    });

    await test.step('Fay adds a warning to a message: Mia, who hides that topic, sees it hidden', async () => {
      await send(noor, 'I keep thinking about the funeral.');
      const plain = messages(mia).getByRole('article', { name: /^Noor at / }).filter({ hasText: 'I keep thinking about the funeral.' });
      await expect(plain).toBeVisible();
      const message = messages(fay).getByRole('article', { name: /^Noor at / }).filter({ hasText: 'I keep thinking about the funeral.' });
      await message.getByRole('button', { name: /^More for the message from Noor/ }).click();
      await message.getByRole('button', { name: 'Add a warning' }).click();
      const dialog = fay.getByRole('dialog', { name: 'Add a warning' });
      await dialog.getByRole('checkbox', { name: 'Grief' }).check();
      await dialog.getByRole('button', { name: 'Add the warning' }).click();
      await expect(dialog).toBeHidden();
      await expect(message.getByText('Content warning: Grief')).toBeVisible();
      await expect(messages(mia).getByText('I keep thinking about the funeral.')).toHaveCount(0);
      await expect(messages(mia).getByRole('button', { name: /^Show the message from Noor/ })).toHaveCount(1);
    });

    await test.step('a warned answer stays hidden in the round block for Mia, who hides its topic, until Show', async () => {
      await fay.getByRole('button', { name: 'Start a check-in round' }).click();
      const dialog = fay.getByRole('dialog', { name: 'Start a check-in round' });
      await dialog.getByRole('textbox', { name: 'Question for the round' }).fill('Anything you want to share?');
      await dialog.getByRole('button', { name: 'Start the round' }).click();
      await expect(dialog).toBeHidden();
      const second = (page: Page) => roundBlock(page).last();
      await expect(second(noor).getByText('Anything you want to share?')).toBeVisible();
      await second(noor).getByRole('button', { name: 'Answer in the check-in round' }).click();
      const answer = noor.getByRole('dialog', { name: 'Your answer' });
      await answer.getByRole('textbox', { name: 'Your answer' }).fill('The anniversary is hard this year.');
      await answer.getByRole('button', { name: 'Send my answer' }).click();
      await expect(answer).toBeHidden();
      await expect(second(mia).getByText('The anniversary is hard this year.')).toBeVisible();

      await second(fay).getByRole('button', { name: 'Add a warning to the answer from Noor' }).click();
      const warn = fay.getByRole('dialog', { name: 'Add a warning' });
      await warn.getByRole('checkbox', { name: 'Grief' }).check();
      await warn.getByRole('button', { name: 'Add the warning' }).click();
      await expect(warn).toBeHidden();

      await expect(second(mia).getByText('Content warning: Grief')).toBeVisible();
      await expect(second(mia).getByText('The anniversary is hard this year.')).toHaveCount(0);
      await second(mia).getByRole('button', { name: 'Show the answer from Noor' }).click();
      await expect(second(mia).getByText('The anniversary is hard this year.')).toBeVisible();
      // Fay hides nothing: the answer stays readable for her.
      await expect(second(fay).getByText('The anniversary is hard this year.')).toBeVisible();
      await second(fay).getByRole('button', { name: 'Close the round' }).click();
      await expect(second(mia).getByText(/Closed\./)).toBeVisible();
    });

    await test.step('Fay publishes resources; Mia finds one by search and opens its link by the button', async () => {
      await openInfo(fay);
      await openSection(fay, 'Resources');
      const tools = panel(fay);
      const add = tools.getByRole('form', { name: 'Add a resource' });
      for (const resource of [
        { title: 'Box breathing', category: 'Grounding', text: 'Breathe in for four, hold for four, out for four.' },
        { title: 'Sleep and low mood', category: 'Reading', link: 'https://resources.example.org/sleep' },
        { title: 'Five senses', category: 'Grounding', text: 'Name five things you can see.' },
      ]) {
        await add.getByRole('textbox', { name: 'Title' }).fill(resource.title);
        await add.getByRole('combobox', { name: 'Category' }).fill(resource.category);
        if (resource.text !== undefined) await add.getByRole('textbox', { name: 'Text (optional)' }).fill(resource.text);
        if (resource.link !== undefined) await add.getByRole('textbox', { name: 'Link (optional)' }).fill(resource.link);
        await add.getByRole('button', { name: 'Add resource' }).click();
      }
      await tools.getByRole('button', { name: 'Publish the library' }).click();
      await expect(tools.getByRole('status').first()).toHaveText('Library published.');
      await checkScreen(fay, 'facilitator-resources');

      await openInfo(mia);
      const library = mia.getByRole('region', { name: 'Resources' });
      await expect(library.getByRole('heading', { name: 'Grounding' })).toBeVisible();
      await expect(library.getByRole('list', { name: 'Grounding' }).getByRole('listitem')).toHaveCount(2);
      await library.getByRole('searchbox', { name: 'Search the resources' }).fill('breathe');
      await expect(library.getByText('1 of 3 resources match.')).toBeVisible();
      await expect(library.getByRole('listitem', { name: 'Box breathing' })).toBeVisible();
      await expect(library.getByRole('listitem', { name: 'Five senses' })).toHaveCount(0);
      await library.getByRole('searchbox', { name: 'Search the resources' }).fill('sleep');
      const sleep = library.getByRole('listitem', { name: 'Sleep and low mood' });
      await expect(sleep.getByText('https://resources.example.org/sleep', { exact: true })).toBeVisible();
      await expect(sleep.getByRole('link')).toHaveCount(0);
      await checkScreen(mia, 'resources');

      // The new tab gets neither this page (noopener) nor its address (noreferrer).
      const miaContext = contexts[0]!;
      await miaContext.route('https://resources.example.org/**', (route) =>
        route.fulfill({ status: 200, contentType: 'text/html', body: '<title>Sleep</title><p>Sleep and low mood</p>' }),
      );
      const opened = miaContext.waitForEvent('page');
      await sleep.getByRole('button', { name: 'Open link for Sleep and low mood' }).click();
      const tab = await opened;
      await tab.waitForLoadState();
      expect(tab.url()).toBe('https://resources.example.org/sleep');
      expect(await tab.evaluate(() => ({ opener: window.opener === null, referrer: document.referrer }))).toEqual({
        opener: true,
        referrer: '',
      });
      await tab.close();
    });

    const signs = `Not sleeping for days ${token(8)}`;
    const contact = `My sister Ana, 0151 555 0100 ${token(8)}`;
    await test.step('Mia writes a safety plan in Settings', async () => {
      await mia.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
      await mia.getByRole('button', { name: 'My safety plan' }).click();
      await expect(mia.getByRole('heading', { name: 'My safety plan', level: 2 })).toBeVisible();
      await expect(mia.getByRole('heading', { level: 3 })).toHaveCount(6);
      await mia.getByRole('textbox', { name: 'A warning sign' }).fill(signs);
      await mia.getByRole('button', { name: 'Add to My warning signs' }).click();
      await expect(mia.getByRole('status').filter({ hasText: 'Added to your plan.' })).toBeVisible();
      await mia.getByRole('textbox', { name: 'Someone to contact' }).fill(contact);
      await mia.getByRole('button', { name: 'Add to People and services I can ask for help' }).click();
      await mia.getByRole('textbox', { name: 'Something I can do' }).fill('Walk around the block');
      await mia.getByRole('button', { name: 'Add to Things I can do on my own' }).click();
      await expect(mia.getByText('Walk around the block', { exact: true })).toBeVisible();
      await mia.getByRole('button', { name: 'Remove: Walk around the block' }).click();
      await expect(mia.getByText('Walk around the block')).toHaveCount(0);
      await checkScreen(mia, 'safety-plan');
    });

    await test.step('the plan is kept after a reload and unlock, and shows beside the crisis resources', async () => {
      await mia.reload();
      await unlock(mia, MIA_PASSPHRASE);
      await mia.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
      await mia.getByRole('button', { name: 'My safety plan' }).click();
      const warningSigns = mia.getByRole('region', { name: '1. My warning signs' });
      await expect(warningSigns.getByText(signs)).toBeVisible();
      await expect(mia.getByRole('region', { name: '4. People and services I can ask for help' }).getByText(contact)).toBeVisible();
      await expect(mia.getByText('Walk around the block')).toHaveCount(0);

      await mia.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      await mia.locator('button.group').first().click();
      await mia.getByRole('button', { name: 'Crisis resources' }).click();
      const crisis = mia.getByRole('dialog', { name: 'If you are in crisis' });
      await expect(crisis.getByRole('heading', { name: 'My safety plan' })).toBeVisible();
      await expect(crisis.getByText(signs)).toBeVisible();
      await expect(crisis.getByText(contact)).toBeVisible();
      await crisis.getByRole('button', { name: 'Edit my safety plan' }).click();
      await expect(mia.getByRole('heading', { name: 'My safety plan', level: 2 })).toBeVisible();
    });

    await test.step('nobody else sees the plan, and the server never holds it', async () => {
      await noor.getByRole('button', { name: 'Crisis resources' }).click();
      const crisis = noor.getByRole('dialog', { name: 'If you are in crisis' });
      await expect(crisis.getByText("You haven't written a safety plan yet.", { exact: false })).toBeVisible();
      await expect(crisis.getByText(signs)).toHaveCount(0);
      await crisis.getByRole('button', { name: 'Close' }).click();
      await fay.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
      await fay.getByRole('button', { name: 'My safety plan' }).click();
      await expect(fay.getByRole('heading', { name: 'My safety plan', level: 2 })).toBeVisible();
      await expect(fay.getByRole('button', { name: /^Remove:/ })).toHaveCount(0);
      await expect(fay.getByText(signs)).toHaveCount(0);
      const found = scan(server.dataDir, [
        { what: "a warning sign in Mia's plan", text: signs },
        { what: "a contact in Mia's plan", text: contact },
      ]);
      expect(found.files.length, 'the server keeps files to scan').toBeGreaterThan(0);
      expect(found.hits, 'the safety plan is on the server').toEqual([]);
    });
  } finally {
    for (const context of contexts) await context.close();
    olive?.remove();
  }
});
