// Session life cycle: setup status, current user, login/logout.
import { get } from 'svelte/store';
import { api, API, setUnauthorizedHandler } from './api';
import { navigate, path } from './router';
import { system, user } from './stores';
import type { User } from './model';

export interface LoginReply {
  access_token?: string;
  refresh_token?: string;
  user?: User;
}

/** Is first-run setup still open? Accepts `{setup_required}`, `{needed}`, `{required}` or `{users: 0}`. */
export async function setupNeeded(): Promise<boolean> {
  try {
    const s = await api.request<Record<string, unknown>>(`${API}/auth/setup`, { noRetry: true });
    const d = s.data ?? {};
    for (const k of ['needs_setup', 'setup_required', 'needed', 'required', 'open', 'available']) if (typeof d[k] === 'boolean') return d[k] as boolean;
    if (typeof d.done === 'boolean') return !d.done;
    if (typeof d.completed === 'boolean') return !d.completed;
    if (typeof d.users === 'number') return d.users === 0;
    return false;
  } catch {
    return false;
  }
}

export async function loadMe(): Promise<User | null> {
  try {
    const r = await api.request<User | { user: User }>(`${API}/auth/me`, { noRetry: false });
    const u = (r.data as { user?: User }).user ?? (r.data as User);
    user.set(u);
    loadSystem();
    return u;
  } catch {
    user.set(null);
    return null;
  }
}

async function loadSystem() {
  try {
    const info = await api.get<Record<string, any>>(`${API}/system/info`);
    system.set({ ...info, domain: info.domain ?? info.network?.domain ?? 'prox.local', version: info.version ?? '' });
  } catch {
    /* optional */
  }
}

export async function login(username: string, password: string): Promise<User> {
  const r = await api.request<LoginReply>(`${API}/auth/login`, { method: 'POST', body: { username, password }, noRetry: true });
  const u = r.data.user ?? (await loadMe());
  if (!u) throw new Error('Signed in, but the session cookie was not accepted by the browser.');
  user.set(u);
  loadSystem();
  return u;
}

export async function setup(username: string, password: string): Promise<User> {
  const r = await api.request<LoginReply>(`${API}/auth/setup`, { method: 'POST', body: { username, password }, noRetry: true });
  if (r.data?.user && r.data.access_token) {
    user.set(r.data.user);
    loadSystem();
    return r.data.user;
  }
  return login(username, password);
}

export async function logout() {
  try {
    await api.request(`${API}/auth/logout`, { method: 'POST', body: {}, noRetry: true });
  } catch {
    /* already gone */
  }
  user.set(null);
  navigate('/login', true);
}

/** Where to go after login: the page that sent us to login, else the dashboard. */
export function nextPath(): string {
  const q = new URLSearchParams(get(path).split('?')[1] ?? '');
  const n = q.get('next');
  return n && n.startsWith('/') && !n.startsWith('//') && !n.startsWith('/login') ? n : '/';
}

setUnauthorizedHandler(() => {
  const p = get(path);
  if (p.startsWith('/login') || p.startsWith('/setup')) return;
  user.set(null);
  navigate(`/login?next=${encodeURIComponent(p)}`, true);
});
