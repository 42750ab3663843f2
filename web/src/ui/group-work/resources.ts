// The resource library's search and grouping, as the protocol's `ResourceLibrary::search` does
// it: a resource matches when its title, category or text holds every word of the query,
// ignoring case; the matches are grouped by category in the order the categories first appear.

import type { Resource } from '../../wasm-pkg/confide_client_web.js';

/** The resources matching `query` (all for an empty one), with their places in the library. */
export function searchResources(resources: readonly Resource[], query: string): { index: number; resource: Resource }[] {
  const words = query.toLowerCase().split(/\s+/).filter((w) => w !== '');
  return resources
    .map((resource, index) => ({ index, resource }))
    .filter(({ resource }) => {
      const hay = `${resource.title}\n${resource.category}\n${resource.text ?? ''}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    });
}

/** `found` grouped by category, categories in the order they first appear. */
export function byCategory<T extends { resource: Resource }>(found: readonly T[]): { category: string; items: T[] }[] {
  const groups = new Map<string, T[]>();
  for (const item of found) {
    const list = groups.get(item.resource.category) ?? [];
    list.push(item);
    groups.set(item.resource.category, list);
  }
  return [...groups.entries()].map(([category, items]) => ({ category, items }));
}
