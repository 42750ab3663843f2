// The page's entry: mounts the app. Everything the page does with a profile goes through the SDK
// (./sdk/client.ts) to the worker that owns the core.

import { mount } from 'svelte';

import App from './App.svelte';
import './app.css';

const target = document.getElementById('app');
if (target === null) {
  throw new Error('index.html has no #app element');
}
mount(App, { target });
