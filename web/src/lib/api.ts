// API client for /api/v1. Browser auth: HttpOnly session cookies set by login plus a
// CSRF cookie whose value is echoed in a header on every write. A 401 triggers one
// refresh attempt; when that fails the `onUnauthorized` hook sends the user to login.

export const API = '/api/v1';

/** Header that carries the CSRF token on writes (double-submit cookie). */
export const CSRF_HEADER = 'X-CSRF-Token';

/** One field error map from problem+json (`errors: {field: message}`). */
export type FieldErrors = Record<string, string>;

/** An RFC 9457 problem, or a network failure, as a throwable. */
export class ApiError extends Error {
  status: number;
  title: string;
  detail: string;
  type: string;
  errors: FieldErrors;
  constructor(status: number, body: Partial<Problem> | null, fallback?: string) {
    const title = body?.title || fallback || (status ? `HTTP ${status}` : 'Network error');
    const detail = body?.detail || '';
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.type = body?.type || 'about:blank';
    this.errors = normalizeFieldErrors(body?.errors);
  }
  /** Message for one form field, if the server named it. */
  field(name: string): string | undefined {
    return this.errors[name];
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors: unknown;
}

/** problem+json `errors` may be `{field: msg}`, `{field: [msg]}` or `[{field|pointer, message}]`. */
export function normalizeFieldErrors(e: unknown): FieldErrors {
  const out: FieldErrors = {};
  if (!e) return out;
  if (Array.isArray(e)) {
    for (const it of e) {
      if (it && typeof it === 'object') {
        const o = it as Record<string, unknown>;
        const k = String(o.field ?? o.name ?? o.pointer ?? '').replace(/^#?\//, '').replace(/\//g, '.');
        const m = String(o.message ?? o.detail ?? o.msg ?? 'invalid');
        if (k) out[k] = m;
      }
    }
    return out;
  }
  if (typeof e === 'object') {
    for (const [k, v] of Object.entries(e as Record<string, unknown>)) {
      out[k] = Array.isArray(v) ? v.map(String).join('; ') : String(v);
    }
  }
  return out;
}

/** Read a cookie by exact name, or the first cookie whose name contains `csrf`. */
export function readCsrf(cookie: string): string | null {
  const pairs = cookie
    .split(';')
    .map((c) => c.trim())
    .filter(Boolean)
    .map((c) => {
      const i = c.indexOf('=');
      return i < 0 ? [c, ''] : [c.slice(0, i), c.slice(i + 1)];
    });
  const hit = pairs.find(([k]) => /csrf|xsrf/i.test(k));
  return hit ? decodeURIComponent(hit[1]) : null;
}

/** Lists may come bare or wrapped (`{items}`, `{data}`, `{results}` plus paging). */
export function asList<T = unknown>(x: unknown): T[] {
  if (Array.isArray(x)) return x as T[];
  if (x && typeof x === 'object') {
    const o = x as Record<string, unknown>;
    for (const k of ['items', 'data', 'results', 'apps', 'entries', 'records', 'leases', 'routes', 'forwards', 'users', 'tokens', 'hosts', 'nodes', 'backups', 'jobs', 'events']) {
      if (Array.isArray(o[k])) return o[k] as T[];
    }
  }
  return [];
}

/** Total count of a paged list, falling back to its length. */
export function listTotal(x: unknown): number {
  if (x && typeof x === 'object' && !Array.isArray(x)) {
    const o = x as Record<string, unknown>;
    if (typeof o.total === 'number') return o.total;
    if (typeof o.count === 'number') return o.count;
  }
  return asList(x).length;
}

export interface RequestOpts {
  method?: string;
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined | null>;
  /** Return the raw text instead of parsed JSON. */
  text?: boolean;
  /** Do not try refresh/redirect on 401 (login, refresh itself). */
  noRetry?: boolean;
  signal?: AbortSignal;
}

export interface ClientDeps {
  fetch: typeof fetch;
  cookie: () => string;
  onUnauthorized: () => void;
}

export interface Reply<T> {
  data: T;
  status: number;
  location: string | null;
}

/** Build `path?query` skipping empty values. */
export function withQuery(path: string, q?: RequestOpts['query']): string {
  if (!q) return path;
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue;
    p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
}

export class Client {
  private deps: ClientDeps;
  private refreshing: Promise<boolean> | null = null;
  constructor(deps: ClientDeps) {
    this.deps = deps;
  }

  async request<T = unknown>(path: string, opts: RequestOpts = {}): Promise<Reply<T>> {
    const method = (opts.method ?? 'GET').toUpperCase();
    const url = withQuery(path.startsWith('/') ? path : `${API}/${path}`, opts.query);
    const doFetch = async () => {
      const headers: Record<string, string> = { Accept: opts.text ? 'text/plain, application/json' : 'application/json' };
      if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
      if (method !== 'GET' && method !== 'HEAD') {
        const t = readCsrf(this.deps.cookie());
        if (t) headers[CSRF_HEADER] = t;
      }
      return this.deps.fetch(url, {
        method,
        headers,
        credentials: 'same-origin',
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
      });
    };
    let res: Response;
    try {
      res = await doFetch();
    } catch (e) {
      if ((e as Error)?.name === 'AbortError') throw e;
      throw new ApiError(0, null, 'Cannot reach the appliance');
    }
    if (res.status === 401 && !opts.noRetry) {
      if (await this.refresh()) {
        try {
          res = await doFetch();
        } catch {
          throw new ApiError(0, null, 'Cannot reach the appliance');
        }
      }
      if (res.status === 401) {
        this.deps.onUnauthorized();
      }
    }
    return this.parse<T>(res, opts);
  }

  private async parse<T>(res: Response, opts: RequestOpts): Promise<Reply<T>> {
    const ct = res.headers.get('content-type') ?? '';
    const raw = res.status === 204 ? '' : await res.text();
    let body: unknown = raw;
    if (ct.includes('json') && raw) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    if (!res.ok) {
      const p = body && typeof body === 'object' ? (body as Partial<Problem>) : { detail: typeof body === 'string' ? body.slice(0, 300) : '' };
      throw new ApiError(res.status, p, res.statusText || undefined);
    }
    if (opts.text && typeof body !== 'string') {
      const o = body as Record<string, unknown>;
      body = typeof o?.logs === 'string' ? o.logs : typeof o?.output === 'string' ? o.output : typeof o?.text === 'string' ? o.text : JSON.stringify(body, null, 2);
    }
    return { data: body as T, status: res.status, location: res.headers.get('location') };
  }

  /** One shared refresh at a time; true when the session was renewed. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        try {
          const res = await this.deps.fetch(`${API}/auth/refresh`, {
            method: 'POST',
            credentials: 'same-origin',
            headers: (() => {
              const h: Record<string, string> = { Accept: 'application/json', 'Content-Type': 'application/json' };
              const t = readCsrf(this.deps.cookie());
              if (t) h[CSRF_HEADER] = t;
              return h;
            })(),
            body: '{}',
          });
          return res.ok;
        } catch {
          return false;
        } finally {
          setTimeout(() => (this.refreshing = null), 0);
        }
      })();
    }
    return this.refreshing;
  }

  async get<T = unknown>(path: string, query?: RequestOpts['query']): Promise<T> {
    return (await this.request<T>(path, { query })).data;
  }
  async text(path: string, query?: RequestOpts['query']): Promise<string> {
    return (await this.request<string>(path, { query, text: true })).data;
  }
  async post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return (await this.request<T>(path, { method: 'POST', body })).data;
  }
  async put<T = unknown>(path: string, body: unknown): Promise<T> {
    return (await this.request<T>(path, { method: 'PUT', body })).data;
  }
  async patch<T = unknown>(path: string, body: unknown): Promise<T> {
    return (await this.request<T>(path, { method: 'PATCH', body })).data;
  }
  async del<T = unknown>(path: string): Promise<T> {
    return (await this.request<T>(path, { method: 'DELETE' })).data;
  }
}

/** Job id from a 202 reply: `Location: /api/v1/jobs/{id}`, or `job_id`/`job.id` in the body. */
export function jobIdFrom(reply: Reply<unknown>): string | null {
  const m = reply.location?.match(/\/jobs\/([^/?#]+)/);
  if (m) return decodeURIComponent(m[1]);
  const d = reply.data as Record<string, unknown> | null;
  if (d && typeof d === 'object') {
    if (typeof d.job_id === 'string') return d.job_id;
    const j = d.job as Record<string, unknown> | undefined;
    if (j && typeof j.id === 'string') return j.id;
    const a = d.app as Record<string, unknown> | undefined;
    if (a && typeof a.job_id === 'string') return a.job_id;
    if (typeof d.id === 'string' && /^job/.test(d.id)) return d.id;
  }
  return null;
}

let handler: () => void = () => {};
/** Set what happens when the session is gone (the app navigates to login). */
export function setUnauthorizedHandler(f: () => void) {
  handler = f;
}

/** The client the UI uses. */
export const api = new Client({
  fetch: (...a) => globalThis.fetch(...a),
  cookie: () => (typeof document !== 'undefined' ? document.cookie : ''),
  onUnauthorized: () => handler(),
});
