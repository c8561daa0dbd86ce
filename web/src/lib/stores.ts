// Application-wide state: session, toasts, theme, system info.
import { writable, derived, get } from 'svelte/store';
import type { User } from './model';

export const user = writable<User | null>(null);
export const isAdmin = derived(user, (u) => u?.role === 'admin');

/** System info (domain, version) once loaded. */
export const system = writable<{ domain: string; version: string; [k: string]: unknown }>({ domain: 'prox.local', version: '' });

export interface Toast {
  id: number;
  kind: 'ok' | 'error' | 'info';
  text: string;
}
export const toasts = writable<Toast[]>([]);
let toastSeq = 0;
/** Show a short message; errors stay longer. Returns the toast id. */
export function toast(text: string, kind: Toast['kind'] = 'ok', ms?: number): number {
  const id = ++toastSeq;
  toasts.update((t) => [...t.slice(-4), { id, kind, text }]);
  const life = ms ?? (kind === 'error' ? 8000 : 4000);
  if (life > 0) setTimeout(() => dismiss(id), life);
  return id;
}
export function dismiss(id: number) {
  toasts.update((t) => t.filter((x) => x.id !== id));
}

export type Theme = 'light' | 'dark' | 'system';
const THEME_KEY = 'proximity.theme';
function initialTheme(): Theme {
  try {
    const t = globalThis.localStorage?.getItem(THEME_KEY);
    if (t === 'light' || t === 'dark') return t;
  } catch {
    /* storage blocked */
  }
  return 'system';
}
export const theme = writable<Theme>(initialTheme());
theme.subscribe((t) => {
  if (typeof document === 'undefined') return;
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  try {
    if (t === 'system') localStorage.removeItem(THEME_KEY);
    else localStorage.setItem(THEME_KEY, t);
  } catch {
    /* storage blocked */
  }
});
/** light → dark → system → light */
export function cycleTheme() {
  const order: Theme[] = ['light', 'dark', 'system'];
  theme.set(order[(order.indexOf(get(theme)) + 1) % order.length]);
}
