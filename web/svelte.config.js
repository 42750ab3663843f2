// Svelte's compiler options, read by the Vite plugin and by svelte-check.
export default {
  compilerOptions: {
    // Runes everywhere: the app is written for Svelte 5 only.
    runes: true,
  },
};
