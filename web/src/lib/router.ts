// Tiny history router: `path` store, `navigate()`, pattern matching with :params.
import { writable } from 'svelte/store';

const here = () => (typeof location !== 'undefined' ? location.pathname + location.search : '/');
export const path = writable<string>(here());

export function navigate(to: string, replace = false) {
  if (typeof history !== 'undefined') {
    if (replace) history.replaceState({}, '', to);
    else history.pushState({}, '', to);
  }
  path.set(to);
  if (typeof window !== 'undefined' && !replace) window.scrollTo(0, 0);
}

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', () => path.set(here()));
  // Same-origin <a href="/..."> links navigate without reload.
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element)?.closest?.('a');
    if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
    const href = a.getAttribute('href') ?? '';
    if (!href.startsWith('/') || href.startsWith('/api/')) return;
    e.preventDefault();
    navigate(href);
  });
}

/** Match "/apps/:id" against "/apps/app-1?x=1" → {id:"app-1"} or null. */
export function match(pattern: string, p: string): Record<string, string> | null {
  const clean = p.split(/[?#]/)[0].replace(/\/+$/, '') || '/';
  const a = pattern.split('/');
  const b = clean.split('/');
  if (a.length !== b.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i].startsWith(':')) {
      if (!b[i]) return null;
      out[a[i].slice(1)] = decodeURIComponent(b[i]);
    } else if (a[i] !== b[i]) return null;
  }
  return out;
}

/** Query parameters of a path. */
export function queryOf(p: string): URLSearchParams {
  const i = p.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : p.slice(i + 1));
}
