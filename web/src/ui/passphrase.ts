// The passphrase rule (crate `passphrase/`, zxcvbn) as its own wasm module, fetched the first
// time the create-profile screen needs it, so its dictionaries never count towards the app's
// first load. Its wasm is fetched with Subresource Integrity. `cargo xtask web` builds it into src/wasm-pkg/passphrase/.

// The glue is imported statically, so it is part of the entry script `index.html` loads with
// its integrity value: it handles the passphrase, so it must be as checked as the rest of the
// page. Only the wasm (zxcvbn's dictionaries, the bulk) waits until it is needed.
import * as rule from '../wasm-pkg/passphrase/confide_passphrase.js';
import url from '../wasm-pkg/passphrase/confide_passphrase_bg.wasm?url';

/** What the strength meter shows. */
export interface PassphraseVerdict {
  /** 0 (very weak) to 4 (strong). */
  score: number;
  /** The score in one word. */
  word: string;
  /** Whether it may be used. */
  acceptable: boolean;
  /** The sentence to show. */
  message: string;
}

type Rule = typeof rule;

let loading: Promise<Rule> | undefined;

function load(): Promise<Rule> {
  loading ??= (async () => {
    // Fetched with its hash from the build, like the core's wasm: a module that was changed on
    // the way (or on the server after the build) is refused, not run.
    await rule.default({ module_or_path: fetch(url, { integrity: __CONFIDE_PASSPHRASE_WASM_INTEGRITY__ }) });
    return rule;
  })();
  // A failed load (offline, or a module that does not match its hash) is tried again next time.
  loading.catch(() => (loading = undefined));
  return loading;
}

/**
 * Checks `passphrase` with the pseudonym as a known word. The bytes are copied into the wasm
 * (which wipes its copy) and zeroed here once checked.
 */
export async function checkPassphrase(passphrase: string, name: string): Promise<PassphraseVerdict> {
  const rule = await load();
  const bytes = new TextEncoder().encode(passphrase);
  try {
    const check = rule.checkPassphrase(bytes, name.trim() === '' ? [] : [name.trim()]);
    const verdict = { score: check.score, word: check.word, acceptable: check.acceptable, message: check.message };
    check.free();
    return verdict;
  } finally {
    bytes.fill(0);
  }
}
