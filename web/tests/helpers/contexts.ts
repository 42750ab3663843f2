// More people in the browser: a browser context per person, watched like the fixtures' own
// `context` (a CSP or Trusted Types violation, a console error or an uncaught exception of any of
// its pages is added to the test's `problems`, which the fixtures assert empty at the end).

import type { Browser, BrowserContext } from '@playwright/test';

/** A new context in `browser` whose relative URLs go to `baseURL`, reporting into `problems`. */
export async function watchedContext(browser: Browser, baseURL: string, problems: string[]): Promise<BrowserContext> {
  const context = await browser.newContext({ baseURL });
  await watch(context, problems);
  return context;
}

/** Reports `context`'s CSP violations, console errors and uncaught exceptions into `problems`. */
export async function watch(context: BrowserContext, problems: string[]): Promise<void> {
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(
        `CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || 'inline'} ` +
          `at ${event.sourceFile}:${event.lineNumber}`,
      );
    });
  });
  context.on('console', (message) => {
    if (message.type() === 'error') {
      const where = message.page()?.url() ?? message.worker()?.url() ?? 'a worker';
      problems.push(`console error on ${where}: ${message.text()}`);
    }
  });
  context.on('weberror', (error) => {
    problems.push(`uncaught on ${error.page()?.url() ?? '?'}: ${error.error().message}`);
  });
}
