// Globals the build defines (vite.config.ts) and the few browser types TypeScript's libraries
// do not have yet.

/** SHA-256 (hex) of the sources this bundle was built from; the page and the worker compare it. */
declare const __CONFIDE_BUNDLE_HASH__: string;
/** `sha384-…` of the wasm module, checked by the worker's fetch. */
declare const __CONFIDE_WASM_INTEGRITY__: string;
/** `sha384-…` of the passphrase rule's wasm module, checked by its fetch (ui/passphrase.ts). */
declare const __CONFIDE_PASSPHRASE_WASM_INTEGRITY__: string;
/** The workspace version (Cargo.toml), for the service worker, which loads no wasm. */
declare const __CONFIDE_VERSION__: string;

/** A Trusted Types script URL (https://w3c.github.io/trusted-types/dist/spec/). */
interface TrustedScriptURL {
  readonly __brand: 'TrustedScriptURL';
}

/** The part of a Trusted Types policy the app creates. */
interface TrustedTypePolicy {
  readonly name: string;
  createScriptURL(input: string): TrustedScriptURL;
}

/** `globalThis.trustedTypes`, where the browser has Trusted Types. */
interface TrustedTypePolicyFactory {
  createPolicy(
    name: string,
    rules: { createScriptURL?: (input: string) => string },
  ): TrustedTypePolicy;
}

declare var trustedTypes: TrustedTypePolicyFactory | undefined;
