// The web app's build. `cargo xtask web` runs it (through `npm run build`) after wasm-bindgen has
// written src/wasm-pkg/, then post-processes dist/ into target/web/ (SRI attributes, the asset
// manifest, pre-compressed copies). Nothing here may need a CSP exception at run time: no inline
// scripts or styles, no data: URLs, no eval, no modulepreload polyfill.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

/** The wasm module the worker loads, as wasm-bindgen writes it. */
const WASM_FILE = join(root, 'src', 'wasm-pkg', 'confide_client_web_bg.wasm');
const PASSPHRASE_WASM_FILE = join(root, 'src', 'wasm-pkg', 'passphrase', 'confide_passphrase_bg.wasm');

/** The sources a bundle is built from; their hash is the bundle hash (below). */
const BUNDLE_INPUTS = ['index.html', 'package-lock.json', 'vite.config.ts', 'svelte.config.js', 'src', 'public'];

/**
 * The service worker's source. It is built to `/sw.js` (a fixed name at the root: its scope is
 * the whole app, and the browser finds updates by fetching that URL again), self-contained (it
 * imports nothing at run time), and it carries the bundle hash, so that every change to the app's
 * sources changes its bytes and the browser installs the new version (which then waits, see
 * src/pwa/sw.ts).
 */
const SERVICE_WORKER = join(root, 'src', 'pwa', 'sw.ts');

/** The workspace version (Cargo.toml `[workspace.package]`), which the service worker reports. */
function workspaceVersion(): string {
  const manifest = readFileSync(join(root, '..', 'Cargo.toml'), 'utf8');
  const section = manifest.slice(manifest.indexOf('[workspace.package]'));
  const version = /^version = "([^"]+)"/m.exec(section)?.[1];
  if (version === undefined) throw new Error('Cargo.toml has no [workspace.package] version');
  return version;
}

function filesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => filesUnder(join(path, name)));
}

/**
 * The bundle hash: SHA-256 over every source file of the bundle (its path, then its bytes), the
 * generated wasm included. The page and the worker both carry it, so a tab never talks to a
 * worker built from other sources (plan §3). It depends on the sources only, so the same sources
 * give the same hash on every machine.
 */
function bundleHash(): string {
  const hash = createHash('sha256');
  for (const file of BUNDLE_INPUTS.flatMap((input) => filesUnder(join(root, input)))) {
    const name = relative(root, file).split(sep).join('/');
    const bytes = readFileSync(file);
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  }
  return hash.digest('hex');
}

/**
 * The Subresource Integrity value of a wasm module, which the app fetches with `{integrity}`:
 * the core's (the worker) and the passphrase rule's (the create-profile screen).
 */
function wasmIntegrity(file: string): string {
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: build the web app with \`cargo xtask web\``);
  }
  return `sha384-${createHash('sha384').update(readFileSync(file)).digest('base64')}`;
}

export default defineConfig(({ command }) => ({
  plugins: [svelte()],
  define: {
    __CONFIDE_BUNDLE_HASH__: JSON.stringify(command === 'build' ? bundleHash() : 'dev'),
    __CONFIDE_WASM_INTEGRITY__: JSON.stringify(command === 'build' ? wasmIntegrity(WASM_FILE) : ''),
    __CONFIDE_PASSPHRASE_WASM_INTEGRITY__: JSON.stringify(
      command === 'build' ? wasmIntegrity(PASSPHRASE_WASM_FILE) : '',
    ),
    __CONFIDE_VERSION__: JSON.stringify(workspaceVersion()),
  },
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    // Vite's polyfill is an inline-able script that injects <link> elements; every browser we
    // support has modulepreload, and the CSP has no room for it.
    modulePreload: { polyfill: false },
    // Never inline an asset as a data: URL: the CSP allows 'self' only.
    assetsInlineLimit: 0,
    // xtask measures the compressed sizes itself (brotli 11, as served).
    reportCompressedSize: false,
    sourcemap: false,
    rolldownOptions: {
      input: { index: join(root, 'index.html'), sw: SERVICE_WORKER },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  worker: {
    // A module worker: the SharedWorker/Worker is started with {type: "module"}.
    format: 'es',
  },
}));
