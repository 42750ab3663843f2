// What a member writes while the server cannot be reached: the core keeps it (held) in the
// profile, and the page shows the core's list, not one of its own. So "Waiting to send" is still
// there after a reload (and in every tab), and goes once the message is sent after the server is
// back. The facilitator is played by the `confide` CLI, against a server of the test's own that
// it stops and starts again.

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { watchedContext } from './helpers/contexts.ts';
import { CliPerson } from './helpers/cli.ts';
import { joinFromLink, messageBox, messages, unlock } from './helpers/member.ts';
import { RestartableServer } from './helpers/server.ts';

const BOB = 'violet harbour lantern quietly';
const WRITTEN = 'Written while the server was down.';

test('a message written offline waits through a reload, then goes once the server is back', async ({
  browser,
  problems,
  server: fixtureServer,
}) => {
  // The fixtures' server cannot be restarted: this test has its own, with the same certificate.
  const own = await RestartableServer.start(fixtureServer);
  const fay = CliPerson.init(own.server, 'Fay');
  const context = await watchedContext(browser, own.server.origin, problems);
  const bob = await context.newPage();
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);

    await test.step('Bob joins with the open link', async () => {
      await joinFromLink(bob, invite.web_link, { name: 'Bob', passphrase: BOB });
      await expect(messages(bob)).toBeVisible();
    });

    const waiting = messages(bob).getByRole('article', { name: 'Your message, waiting to send' });
    await test.step('the server stops; what Bob writes waits to send', async () => {
      await own.stop();
      await expect(bob.getByText("You're offline. What you send will wait and go out when you're back.")).toBeVisible();
      await messageBox(bob).fill(WRITTEN);
      await messageBox(bob).press('Control+Enter');
      await expect(waiting).toContainText(WRITTEN);
      await expect(waiting).toContainText('Waiting to send');
      await expect(messageBox(bob)).toHaveValue('');
    });

    await test.step('Bob reloads and unlocks: the core still lists it as waiting', async () => {
      await bob.reload();
      await unlock(bob, BOB);
      await bob.getByRole('button', { name: /^Your group/ }).click();
      await expect(waiting).toContainText(WRITTEN);
      await expect(waiting).toContainText('Waiting to send');
      await checkScreen(bob, 'held-after-reload');
    });

    await test.step('the server is back: it is sent, and no longer waits', async () => {
      await own.restart();
      await expect(waiting).toHaveCount(0, { timeout: 60_000 });
      await expect(
        messages(bob).getByRole('article', { name: /^You at / }).filter({ hasText: WRITTEN }),
      ).toBeVisible();
      await expect
        .poll(() => (fay.json(['read', 'circle']) as { name: string; text: string }[]).map((m) => `${m.name}: ${m.text}`))
        .toContain(`Bob: ${WRITTEN}`);
    });
  } finally {
    await context.close();
    await own.remove();
  }
});

test('a message written before someone joined waits for the writer, who sends it anyway', async ({
  browser,
  problems,
  server: fixtureServer,
}) => {
  const own = await RestartableServer.start(fixtureServer);
  const fay = CliPerson.init(own.server, 'Fay');
  const eve = CliPerson.init(own.server, 'Eve');
  const context = await watchedContext(browser, own.server.origin, problems);
  let bob = await context.newPage();
  const private_ = 'Something I only wanted Fay to read.';
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle', '--uses', '2']);
    await joinFromLink(bob, invite.web_link, { name: 'Bob', passphrase: BOB });
    await expect(messages(bob)).toBeVisible();

    await test.step('Bob writes while the server is down, then closes Confide', async () => {
      await own.stop();
      await expect(bob.getByText("You're offline. What you send will wait and go out when you're back.")).toBeVisible();
      await messageBox(bob).fill(private_);
      await messageBox(bob).press('Control+Enter');
      await expect(messages(bob).getByRole('article', { name: 'Your message, waiting to send' })).toContainText(private_);
      await bob.close();
    });

    await test.step('meanwhile Eve joins the group', async () => {
      await own.restart();
      eve.ok(['join', invite.web_link, '--label', 'circle']);
    });

    await test.step('Bob comes back: his message is not sent by itself, and he is told why', async () => {
      bob = await context.newPage();
      await bob.goto('/');
      await unlock(bob, BOB);
      await bob.getByRole('button', { name: /^Your group/ }).click();
      const waiting = messages(bob).getByRole('article', { name: 'Your message, not sent: the group changed' });
      await expect(waiting).toContainText(private_);
      await expect(waiting).toContainText('Eve joined after you wrote this. Send it to everyone now, or discard it?');
      await expect(bob.getByText(/A message you wrote waits for you/)).toBeVisible();
      await checkScreen(bob, 'held-needs-confirm');
      expect((eve.json(['read', 'circle']) as { text: string }[]).map((m) => m.text)).not.toContain(private_);

      await waiting.getByRole('button', { name: /^Send anyway/ }).click();
      await expect(waiting).toHaveCount(0);
      await expect
        .poll(() => (eve.json(['read', 'circle']) as { name: string; text: string }[]).map((m) => `${m.name}: ${m.text}`))
        .toContain(`Bob: ${private_}`);
    });
  } finally {
    await context.close();
    await own.remove();
  }
});

test('an answer to a round written while the server is down is kept, not reported as not sent, and goes once', async ({
  browser,
  problems,
  server: fixtureServer,
}) => {
  const ANSWER = 'Tired, but still here.';
  const own = await RestartableServer.start(fixtureServer);
  const fay = CliPerson.init(own.server, 'Fay');
  const context = await watchedContext(browser, own.server.origin, problems);
  const bob = await context.newPage();
  const round = messages(bob).getByRole('article', { name: 'Check-in round' });
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);

    await test.step('Bob joins; Fay opens a check-in round', async () => {
      await joinFromLink(bob, invite.web_link, { name: 'Bob', passphrase: BOB });
      await expect(messages(bob)).toBeVisible();
      fay.ok(['round', 'open', 'circle', 'How was your week, in one word?', '--closes-in', '1h']);
      await expect(round.getByText('How was your week, in one word?')).toBeVisible({ timeout: 30_000 });
    });

    await test.step('the server stops; Bob answers and is told it is kept, not that it failed', async () => {
      await own.stop();
      await expect(bob.getByText("You're offline. What you send will wait and go out when you're back.")).toBeVisible();
      await round.getByRole('button', { name: 'Answer in the check-in round' }).click();
      const dialog = bob.getByRole('dialog', { name: 'Your answer' });
      await dialog.getByRole('textbox', { name: 'Your answer' }).fill(ANSWER);
      await dialog.getByRole('button', { name: 'Send my answer' }).click();
      await expect(dialog).toBeHidden();
      await expect(
        bob.getByRole('status').filter({
          hasText: 'Your answer is kept on this device and goes into the round as soon as it can.',
        }),
      ).toBeVisible();
      await expect(bob.getByText(/was not sent/)).toHaveCount(0);
      await checkScreen(bob, 'round-answer-kept');
    });

    await test.step('the server is back: the answer is in the round, once', async () => {
      await own.restart();
      const read = () => (fay.json(['read', 'circle']) as { name: string; text: string }[]).map((m) => `${m.name}: ${m.text}`);
      await expect.poll(read, { timeout: 60_000 }).toContain(`Bob: ${ANSWER}`);
      expect(read().filter((line) => line === `Bob: ${ANSWER}`)).toHaveLength(1);
    });
  } finally {
    await context.close();
    await own.remove();
  }
});
