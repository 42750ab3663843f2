// Other people's text in the facilitator's tools, against the real server: one rule makes it
// inert, the worker's (client-web's `sanitizeForDisplay`, the CLI's too). The panel used to run
// its own copy on top, which also replaced the zero-width joiners that hold an emoji sequence
// together, so a member called "Mia 👩‍👧" was shown as "Mia 👩�👧" in every facilitator screen.
// A bidi override must still be shown as the replacement character.

import { becomeFacilitator, openSection, panel } from './facilitator/app.ts';
import { CliPerson } from './facilitator/cli.ts';
import { expect, test } from './fixtures.ts';

/** A name with an emoji sequence joined by a zero-width joiner (U+200D). */
const NAME = 'Mia 👩\u200D👧';
/** A note with a right-to-left override: "pay gnp.exe" would show as "pay exe.png". */
const NOTE = 'pay \u202Egnp.exe now';

test("an emoji name shows whole in the facilitator's tools, and a bidi override in a note is inert", async ({ page, server }) => {
  const people: CliPerson[] = [];
  try {
    const olive = await becomeFacilitator(page, server);
    people.push(olive);
    const invite = olive.json(['invite', 'create', 'circle', '--approval']) as { web_link: string };
    const mia = CliPerson.init(server, NAME);
    people.push(mia);
    mia.ok(['join', invite.web_link, '--label', 'circle', '--note', NOTE]);

    await openSection(page, 'Needs you');
    const tools = panel(page);
    const request = tools.getByRole('listitem', { name: `Join request from ${NAME}` });
    await expect(request).toBeVisible();
    await expect(request.getByText(`${NAME} asks to join`)).toBeVisible();
    await expect(request.locator('blockquote')).toHaveText('pay \uFFFDgnp.exe now');
    expect(await tools.textContent()).not.toContain('\u202E');

    await request.getByRole('button', { name: `Approve ${NAME}` }).click();
    await expect(tools.getByRole('status')).toHaveText(`${NAME} can now join.`);
    await openSection(page, 'Members');
    await expect(tools.getByRole('listitem', { name: NAME, exact: true })).toBeVisible();
  } finally {
    for (const person of people) person.remove();
  }
});
