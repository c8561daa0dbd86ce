import { describe, expect, it, vi } from 'vitest';
import { ApiError, Client, asList, jobIdFrom, listTotal, normalizeFieldErrors, readCsrf, withQuery, CSRF_HEADER } from './api';

function res(status: number, body: unknown, headers: Record<string, string> = {}) {
  const json = typeof body !== 'string';
  return new Response(json ? JSON.stringify(body) : (body as string), {
    status,
    headers: { 'content-type': json ? (status >= 400 ? 'application/problem+json' : 'application/json') : 'text/plain', ...headers },
  });
}

describe('helpers', () => {
  it('reads the csrf cookie by name pattern', () => {
    expect(readCsrf('a=1; proximity_csrf=tok%3D1; b=2')).toBe('tok=1');
    expect(readCsrf('XSRF-TOKEN=x')).toBe('x');
    expect(readCsrf('a=1')).toBeNull();
  });
  it('unwraps lists and totals', () => {
    expect(asList([1, 2])).toEqual([1, 2]);
    expect(asList({ items: [1], total: 9 })).toEqual([1]);
    expect(listTotal({ items: [1], total: 9 })).toBe(9);
    expect(listTotal([1, 2, 3])).toBe(3);
    expect(asList(null)).toEqual([]);
  });
  it('builds query strings without empty values', () => {
    expect(withQuery('/x', { a: 1, b: '', c: undefined, d: 'y z' })).toBe('/x?a=1&d=y+z');
    expect(withQuery('/x?p=1', { a: 2 })).toBe('/x?p=1&a=2');
  });
  it('normalizes field errors of all shapes', () => {
    expect(normalizeFieldErrors({ hostname: 'taken' })).toEqual({ hostname: 'taken' });
    expect(normalizeFieldErrors({ hostname: ['a', 'b'] })).toEqual({ hostname: 'a; b' });
    expect(normalizeFieldErrors([{ pointer: '#/resources/cores', message: 'low' }])).toEqual({ 'resources.cores': 'low' });
  });
  it('finds the job id in Location or body', () => {
    expect(jobIdFrom({ data: {}, status: 202, location: '/api/v1/jobs/job-abc' })).toBe('job-abc');
    expect(jobIdFrom({ data: { job_id: 'j1' }, status: 202, location: null })).toBe('j1');
    expect(jobIdFrom({ data: { app: { job_id: 'j2' } }, status: 202, location: null })).toBe('j2');
    expect(jobIdFrom({ data: {}, status: 202, location: null })).toBeNull();
  });
});

describe('Client', () => {
  it('sends the csrf header on writes only', async () => {
    const f = vi.fn(async () => res(200, { ok: true }));
    const c = new Client({ fetch: f as any, cookie: () => 'proximity_csrf=abc', onUnauthorized: () => {} });
    await c.get('/api/v1/x');
    await c.post('/api/v1/x', { a: 1 });
    const getHeaders = (f.mock.calls[0] as any)[1].headers;
    const postInit = (f.mock.calls[1] as any)[1];
    expect(getHeaders[CSRF_HEADER]).toBeUndefined();
    expect(postInit.headers[CSRF_HEADER]).toBe('abc');
    expect(postInit.body).toBe('{"a":1}');
    expect(postInit.credentials).toBe('same-origin');
  });
  it('throws ApiError with field errors from problem+json', async () => {
    const f = vi.fn(async () => res(422, { type: 'urn:x', title: 'Invalid request', status: 422, detail: 'hostname is taken', errors: { hostname: 'already in use' } }));
    const c = new Client({ fetch: f as any, cookie: () => '', onUnauthorized: () => {} });
    const e = (await c.post('/api/v1/apps', {}).catch((x) => x)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(422);
    expect(e.field('hostname')).toBe('already in use');
    expect(e.message).toContain('hostname is taken');
  });
  it('refreshes once on 401 and retries', async () => {
    let n = 0;
    const f = vi.fn(async (url: string) => {
      if (url.endsWith('/auth/refresh')) return res(200, { access_token: 'x' });
      return ++n === 1 ? res(401, { title: 'Unauthorized', status: 401 }) : res(200, [1]);
    });
    const onU = vi.fn();
    const c = new Client({ fetch: f as any, cookie: () => '', onUnauthorized: onU });
    expect(await c.get('/api/v1/apps')).toEqual([1]);
    expect(f).toHaveBeenCalledTimes(3);
    expect(onU).not.toHaveBeenCalled();
  });
  it('goes to login when refresh fails', async () => {
    const f = vi.fn(async () => res(401, { title: 'Unauthorized', status: 401 }));
    const onU = vi.fn();
    const c = new Client({ fetch: f as any, cookie: () => '', onUnauthorized: onU });
    await expect(c.get('/api/v1/apps')).rejects.toMatchObject({ status: 401 });
    expect(onU).toHaveBeenCalledOnce();
  });
  it('does not retry when noRetry is set (login)', async () => {
    const f = vi.fn(async () => res(401, { title: 'Invalid credentials', status: 401 }));
    const onU = vi.fn();
    const c = new Client({ fetch: f as any, cookie: () => '', onUnauthorized: onU });
    await expect(c.request('/api/v1/auth/login', { method: 'POST', body: {}, noRetry: true })).rejects.toMatchObject({ title: 'Invalid credentials' });
    expect(f).toHaveBeenCalledOnce();
    expect(onU).not.toHaveBeenCalled();
  });
  it('returns text bodies and Location', async () => {
    const f = vi.fn(async () => res(202, { id: 'app-1' }, { location: '/api/v1/jobs/j9' }));
    const c = new Client({ fetch: f as any, cookie: () => '', onUnauthorized: () => {} });
    const r = await c.request('/api/v1/apps', { method: 'POST', body: {} });
    expect(r.status).toBe(202);
    expect(jobIdFrom(r)).toBe('j9');
    const g = vi.fn(async () => res(200, { logs: 'line1\nline2' }));
    const c2 = new Client({ fetch: g as any, cookie: () => '', onUnauthorized: () => {} });
    expect(await c2.text('/api/v1/apps/x/logs')).toBe('line1\nline2');
  });
  it('maps network failures to ApiError status 0', async () => {
    const c = new Client({ fetch: (async () => { throw new TypeError('fail'); }) as any, cookie: () => '', onUnauthorized: () => {} });
    await expect(c.get('/api/v1/x')).rejects.toMatchObject({ status: 0 });
  });
});
