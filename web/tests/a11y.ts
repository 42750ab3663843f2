// `checkScreen(page, name)`: axe-core on the screen the page shows, in both colour schemes and
// at a phone's and a laptop's width (WEB-UX.md "Quality bar"), failing on anything serious or
// critical; the same call writes the screenshots (target/screenshots/<name>-<width>.png, and
// <name>-<width>-dark.png) that docs/screenshots/ is later made from.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import AxeBuilder from '@axe-core/playwright';
import type { Page } from '@playwright/test';

import { expect, TARGET } from './fixtures.ts';

/** The WCAG rule sets axe checks: 2.0, 2.1 and 2.2, levels A and AA. */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa'];

/** The impacts that fail a test. */
const FAILING_IMPACTS = new Set(['serious', 'critical']);

/** The widths a screen is checked at, with the height of the matching device. */
export const VIEWPORTS = [
  { width: 390, height: 844 },
  { width: 1280, height: 800 },
] as const;

/** Where the screenshots go. */
export const SCREENSHOTS = join(TARGET, 'screenshots');

/**
 * Runs axe on `page` in the light and the dark scheme at each of {@link VIEWPORTS}, fails on any
 * serious or critical violation (listing each with its elements), and writes the screenshots.
 * The page's viewport and scheme are restored to light at 1280 afterwards.
 */
export async function checkScreen(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const found: string[] = [];
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    for (const viewport of VIEWPORTS) {
      await page.setViewportSize(viewport);
      const results = await new AxeBuilder({ page }).withTags(AXE_TAGS).analyze();
      for (const violation of results.violations) {
        if (!FAILING_IMPACTS.has(violation.impact ?? '')) continue;
        const targets = violation.nodes.map((node) => node.target.join(' ')).join(', ');
        found.push(
          `${colorScheme} ${viewport.width}px: ${violation.id} (${violation.impact}): ` +
            `${violation.help} — ${targets}`,
        );
      }
      const suffix = colorScheme === 'dark' ? '-dark' : '';
      await page.screenshot({
        path: join(SCREENSHOTS, `${name}-${viewport.width}${suffix}.png`),
        fullPage: true,
      });
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  expect(found, `axe found serious or critical problems on the ${name} screen`).toEqual([]);
}
