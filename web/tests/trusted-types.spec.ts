// The `confide-worker-url` policy's rule, on its own (no browser): only the build's own worker
// scripts (the core's worker, the service worker), same-origin and without credentials, pass. The smoke test shows the real policy letting the app's own worker
// start under the server's CSP.

import { checkWorkerUrl } from '../src/sdk/trusted-types.ts';
import { expect, test } from './fixtures.ts';

const PAGE = 'https://chat.example.org/';

test('the worker URL policy passes the app\'s own worker scripts and refuses everything else', () => {
  expect(checkWorkerUrl('/sw.js', PAGE)).toBe('https://chat.example.org/sw.js');
  expect(checkWorkerUrl('/assets/worker-Ab1.js', PAGE)).toBe('https://chat.example.org/assets/worker-Ab1.js');
  expect(checkWorkerUrl('assets/worker-Ab1.js', `${PAGE}index.html`)).toBe(
    'https://chat.example.org/assets/worker-Ab1.js',
  );
  for (const url of [
    'https://evil.example/worker.js',
    '//evil.example/worker.js',
    'http://chat.example.org/assets/worker.js',
    'https://chat.example.org:8443/assets/worker.js',
    'data:text/javascript,postMessage(1)',
    'blob:https://chat.example.org/1234',
    'javascript:alert(1)',
    '/assets/worker.wasm',
    // Same origin, but not one of the app's workers (a shared static origin may hold others).
    '/assets/index-Ab1.js',
    '/uploads/worker-Ab1.js',
    '/assets/worker-Ab1.js?x=1',
    '/assets/worker-../evil.js',
    '/sw.js#x',
    'https://user:pw@chat.example.org/assets/worker.js',
  ]) {
    expect(() => checkWorkerUrl(url, PAGE), url).toThrow(TypeError);
  }
});
