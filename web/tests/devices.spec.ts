// Linked devices (issue 16) as people use them: a browser that already has the account links a
// second browser (the new device shows a code; both show the same numbers; after both confirm,
// the new one has the group and its recent messages, and messages reach both), then unlinks it
// (the unlinked browser says so and forgets the profile). And the same between a browser and
// the `confide` CLI, both ways. The facilitator is the CLI; axe runs on every new screen.

import type { Locator, Page } from '@playwright/test';

import { checkScreen } from './a11y.ts';
import { expect, test } from './fixtures.ts';
import { CliPerson, serverArgs } from './helpers/cli.ts';
import { watchedContext } from './helpers/contexts.ts';
import { JsonLines } from './helpers/lines.ts';
import { joinFromLink, messages, send } from './helpers/member.ts';

const PASSPHRASE = 'copper meadow whistles softly';
const NEW_PASSPHRASE = 'quiet orchard under snowfall';

/** The linking code as the new device shows it. */
const CODE = /^[A-Z0-9]{5}-[A-Z0-9]{5}$/;

/** The numbers a step shows (large type), as text. */
function numbers(page: Page): Locator {
  return page.locator('p.sas');
}

/** On the welcome screen: "I already use Confide", a passphrase, and the code it shows. */
async function showLinkingCode(page: Page, passphrase: string): Promise<string> {
  await page.goto('/');
  await page.getByRole('button', { name: 'I already use Confide on another device' }).click();
  await expect(page.getByRole('heading', { name: 'Use Confide here too' })).toBeFocused();
  await page.getByRole('textbox', { name: 'A passphrase for this device' }).fill(passphrase);
  await page.getByRole('button', { name: 'Show my linking code' }).click();
  await expect(page.getByRole('heading', { name: 'Your linking code' })).toBeVisible();
  const code = (await page.locator('p.link-code').textContent())?.trim() ?? '';
  expect(code).toMatch(CODE);
  await expect(page.getByRole('img', { name: 'The linking code as a QR code' })).toBeVisible();
  return code;
}

/** In Settings on the existing device: "Link a new device", the code, and the numbers shown. */
async function startLinking(page: Page, code: string): Promise<string> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
  await page.getByRole('button', { name: 'Link a new device' }).click();
  await page.getByRole('textbox', { name: 'The code your new device shows' }).fill(code);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page.getByRole('heading', { name: 'Compare the numbers' })).toBeVisible();
  const sas = (await numbers(page).textContent())?.trim() ?? '';
  expect(sas).toMatch(/^\d{4} \d{4} \d{4}$/);
  return sas;
}

/** The group's conversation, from the groups list. */
async function openGroup(page: Page): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
  await page.locator('button.group').first().click();
  await expect(messages(page)).toBeVisible();
}

test('a browser links a second browser: same numbers, the group comes over, messages reach both, and unlinking ends it', async ({
  page,
  browser,
  server,
  problems,
}) => {
  const fay = CliPerson.init(server, 'Fay');
  const laptop = page;
  const phoneContext = await watchedContext(browser, server.origin, problems);
  const phone = await phoneContext.newPage();
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    await joinFromLink(laptop, invite.web_link, { name: 'Robin', passphrase: PASSPHRASE });
    await expect(messages(laptop)).toBeVisible();
    fay.ok(['send', 'circle', 'Welcome, Robin. Glad you are here.']);
    await expect(messages(laptop).getByText('Welcome, Robin. Glad you are here.')).toBeVisible();

    let code = '';
    await test.step('the new browser chooses a passphrase and shows a one-time code and its QR code', async () => {
      await phone.goto('/');
      await checkScreen(phone, 'welcome');
      code = await showLinkingCode(phone, NEW_PASSPHRASE);
      await checkScreen(phone, 'link-code');
    });

    await test.step('the existing browser lists its devices and takes the code; both show the same numbers', async () => {
      await laptop.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
      const list = laptop.getByRole('list', { name: 'Your devices' });
      await expect(list.getByRole('listitem')).toHaveCount(1);
      await expect(list).toContainText('This device');
      await checkScreen(laptop, 'devices');
      const sas = await startLinking(laptop, code);
      await expect(phone.getByRole('heading', { name: 'Compare the numbers' })).toBeVisible();
      await expect(numbers(phone)).toHaveText(sas);
      await expect(phone.getByText('This device will join the account of Robin.')).toBeVisible();
      await checkScreen(laptop, 'link-compare-existing');
      await checkScreen(phone, 'link-compare-new');
    });

    await test.step('both confirm: the new browser opens with the group and its recent messages', async () => {
      await laptop.getByRole('button', { name: 'They match' }).click();
      await phone.getByRole('button', { name: 'The numbers match' }).click();
      await expect(laptop.getByText(/Your new device \(\S+\) is linked/)).toBeVisible();
      await expect(phone.getByRole('heading', { name: 'Your groups' })).toBeVisible();
      await openGroup(phone);
      await expect(messages(phone).getByText('Welcome, Robin. Glad you are here.')).toBeVisible();
      const list = laptop.getByRole('list', { name: 'Your devices' });
      await expect(list.getByRole('listitem')).toHaveCount(2);
    });

    await test.step('a message from either browser reaches the other, and the facilitator', async () => {
      await openGroup(laptop);
      await send(laptop, 'Written on my laptop.');
      await expect(messages(phone).getByText('Written on my laptop.')).toBeVisible();
      await send(phone, 'And this one on my phone.');
      await expect(messages(laptop).getByText('And this one on my phone.')).toBeVisible();
      await expect
        .poll(() => fay.json<{ text: string }[]>(['read', 'circle']).map((m) => m.text))
        .toEqual(expect.arrayContaining(['Written on my laptop.', 'And this one on my phone.']));
    });

    await test.step('unlinking asks to confirm and for the passphrase; the unlinked browser says so and forgets', async () => {
      await laptop.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
      await laptop.getByRole('button', { name: /^Unlink the device/ }).click();
      const dialog = laptop.getByRole('dialog', { name: 'Unlink this device?' });
      await expect(dialog).toBeVisible();
      await checkScreen(laptop, 'unlink-confirm');
      await dialog.getByRole('textbox', { name: 'Your passphrase, to confirm' }).fill('not my passphrase');
      await dialog.getByRole('button', { name: 'Unlink it' }).click();
      await expect(dialog.getByRole('alert')).toContainText("doesn't open your profile");
      await dialog.getByRole('textbox', { name: 'Your passphrase, to confirm' }).fill(PASSPHRASE);
      await dialog.getByRole('button', { name: 'Unlink it' }).click();
      await expect(dialog).toBeHidden();
      await expect(laptop.getByRole('list', { name: 'Your devices' }).getByRole('listitem')).toHaveCount(1);

      await expect(phone.getByRole('heading', { name: 'This device was unlinked' })).toBeVisible();
      await checkScreen(phone, 'unlinked');
      await phone.getByRole('button', { name: 'OK' }).click();
      await expect(phone.getByRole('heading', { name: 'Welcome' })).toBeVisible();
      // The profile is gone from that browser: a reload offers to create one, not to unlock.
      await phone.reload();
      await expect(phone.getByRole('heading', { name: 'Welcome' })).toBeVisible();

      await openGroup(laptop);
      await send(laptop, 'Still here on the laptop.');
      await expect
        .poll(() => fay.json<{ text: string }[]>(['read', 'circle']).map((m) => m.text))
        .toContain('Still here on the laptop.');
    });
  } finally {
    await phoneContext.close();
    fay.remove();
  }
});

test('Link a browser to a CLI profile and back', async ({ page, server }) => {
  const fay = CliPerson.init(server, 'Fay');
  const cliNew = CliPerson.blank('Robin-cli');
  let robin: CliPerson | undefined;
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    const group = fay.json<{ group: string }[]>(['group', 'list'])[0]?.group ?? '';

    await test.step('a CLI profile links this browser as its new device', async () => {
      robin = CliPerson.init(server, 'Robin');
      robin.ok(['join', invite.web_link, '--label', 'circle']);
      robin.ok(['send', 'circle', 'Hello from the terminal.']);
      const code = await showLinkingCode(page, NEW_PASSPHRASE);
      const add = new JsonLines(robin.spawn(['--json', 'device', 'add', code]));
      try {
        const check = await add.next<{ sas: string; device: string }>();
        await expect(page.getByRole('heading', { name: 'Compare the numbers' })).toBeVisible();
        await expect(numbers(page)).toHaveText(check.sas);
        await page.getByRole('button', { name: 'The numbers match' }).click();
        add.write(check.sas);
        expect(await add.next<{ linked: boolean }>()).toMatchObject({ linked: true });
        expect(await add.exit()).toBe(0);
      } finally {
        add.kill();
      }
      await expect(page.getByRole('heading', { name: 'Your groups' })).toBeVisible();
      await openGroup(page);
      await expect(messages(page).getByText('Hello from the terminal.')).toBeVisible();
      await send(page, 'Hello from the browser.');
      await expect
        .poll(() => robin!.json<{ text: string }[]>(['read', 'circle']).map((m) => m.text))
        .toContain('Hello from the browser.');
    });

    await test.step('this browser links a new CLI device', async () => {
      const link = new JsonLines(cliNew.spawn(['--json', 'device', 'link', ...serverArgs(server)]));
      try {
        const shown = await link.next<{ code: string; qr: string }>();
        expect(shown.code).toMatch(CODE);
        const sas = await startLinking(page, shown.code);
        const offer = await link.next<{ sas: string; name: string; fingerprint: string }>();
        expect(offer.sas).toBe(sas);
        expect(offer.name).toBe('Robin');
        await page.getByRole('button', { name: 'They match' }).click();
        link.write(offer.sas);
        expect(await link.next<{ linked: boolean }>()).toMatchObject({ linked: true });
        expect(await link.exit()).toBe(0);
      } finally {
        link.kill();
      }
      await expect(page.getByText(/Your new device \(\S+\) is linked/)).toBeVisible();
      await expect(page.getByRole('list', { name: 'Your devices' }).getByRole('listitem')).toHaveCount(3);
      await openGroup(page);
      await send(page, 'Now on three devices.');
      await expect
        .poll(() => cliNew.json<{ text: string }[]>(['read', group]).map((m) => m.text), { timeout: 60_000 })
        .toContain('Now on three devices.');
      cliNew.ok(['send', group, 'Sent from the new terminal.']);
      await expect(messages(page).getByText('Sent from the new terminal.')).toBeVisible();
    });
  } finally {
    robin?.remove();
    cliNew.remove();
    fay.remove();
  }
});

test('numbers that differ link nothing, on either device; a mistyped code is refused', async ({ page, browser, server, problems }) => {
  const fay = CliPerson.init(server, 'Fay');
  const phoneContext = await watchedContext(browser, server.origin, problems);
  const phone = await phoneContext.newPage();
  try {
    fay.ok(['group', 'create', '--label', 'circle']);
    const invite = fay.json<{ web_link: string }>(['invite', 'create', 'circle']);
    await joinFromLink(page, invite.web_link, { name: 'Robin', passphrase: PASSPHRASE });
    await expect(messages(page)).toBeVisible();
    const code = await showLinkingCode(phone, NEW_PASSPHRASE);

    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'Link a new device' }).click();
    await page.getByRole('textbox', { name: 'The code your new device shows' }).fill('NOT-A-CODE');
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect(page.getByRole('alert')).toContainText('not a linking code');
    await page.getByRole('button', { name: 'Cancel' }).click();

    await startLinking(page, code);
    await expect(phone.getByRole('heading', { name: 'Compare the numbers' })).toBeVisible();
    await phone.getByRole('button', { name: 'They differ' }).click();
    await expect(phone.getByRole('heading', { name: 'Nothing was linked' })).toBeVisible();
    await expect(phone.getByRole('alert')).toContainText('someone tried to get between your devices');
    await page.getByRole('button', { name: 'They match' }).click();
    await expect(page.getByRole('alert')).toContainText('Linking was stopped on the new device. Nothing was linked.');
    await expect(page.getByRole('list', { name: 'Your devices' }).getByRole('listitem')).toHaveCount(1);
    // The new browser has no profile: "Back" is the welcome screen again.
    await phone.getByRole('button', { name: 'Back' }).click();
    await expect(phone.getByRole('heading', { name: 'Welcome' })).toBeVisible();
    await phone.reload();
    await expect(phone.getByRole('button', { name: 'Create my profile' })).toBeVisible();
  } finally {
    await phoneContext.close();
    fay.remove();
  }
});
