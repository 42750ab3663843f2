// The SDK's smallest use, type-checked by every build (svelte-check covers src/): start the
// core's worker, greet it, and listen to the core's events. README.md walks through it.

import { createConfide, isCoreError } from '../client.ts';

export async function minimal(): Promise<string> {
  try {
    const confide = await createConfide({ dbName: 'confide-v1' });
    if (confide.hello.lock === 'elsewhere') {
      return 'Confide is open in another tab';
    }
    const stop = confide.on((event) => {
      console.info('core event', event);
    });
    stop();
    return `Confide ${confide.hello.version}`;
  } catch (error) {
    return isCoreError(error) ? `${error.code}: ${error.message}` : String(error);
  }
}
