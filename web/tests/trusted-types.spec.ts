// The `confide-worker-url` policy's rule, on its own (no browser): only same-origin script URLs
// without credentials pass. The smoke test shows the real policy letting the app's own worker
// start under the server's CSP.

import { checkWorkerUrl } from '../src/sdk/trusted-types.ts';
import { expect, test } from './fixtures.ts';

const PAGE = 'https://chat.example.org/';

test('the worker URL policy passes same-origin scripts and refuses everything else', () => {
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
    'https://user:pw@chat.example.org/assets/worker.js',
  ]) {
    expect(() => checkWorkerUrl(url, PAGE), url).toThrow(TypeError);
  }
});
