// Development/e2e mock of the Proximity API (/api/v1, shapes from src/api/handlers and
// src/api/openapi.json) that also serves web/dist with the SPA fallback. No dependencies.
//   node e2e/mock-server.mjs [--listen 127.0.0.1:9444] [--admin-password PW] [--fresh]
// --fresh starts without users (first-run setup). Jobs advance on timers like the real
// job runner and emit SSE `snapshot`/`step`/`progress`/`log`/`state` events.
import { createServer } from 'node:http';
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join, extname } from 'node:path';

const args = process.argv.slice(2);
const opt = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
const [host, port] = opt('--listen', '127.0.0.1:9444').split(':');
const ADMIN_PW = opt('--admin-password', 'admin-password');
const FRESH = args.includes('--fresh');
const STEP_MS = Number(opt('--step-ms', '400'));
const DIST = new URL('../dist/', import.meta.url).pathname;
const DOMAIN = 'prox.local';

const now = () => Math.floor(Date.now() / 1000);
const iso = (s = now()) => new Date(s * 1000).toISOString();
const hex = (n) => randomBytes(n).toString('hex');

// ---- state
const users = [];
const sessions = new Map(); // access token -> user id
const refreshes = new Map(); // refresh token -> user id
const tokens = []; // api tokens
const apps = [];
const jobs = new Map();
const backups = new Map(); // app id -> []
const audit = [];
const subscribers = new Map(); // job id -> Set(res)
let settings = {
  resources: { digest: hex(8), settings: { cores: 1, memory_mb: 1024, disk_gb: 8, max_apps_per_user: 10 } },
  network: { digest: hex(8), settings: { upstream_dns: ['1.1.1.1:53'], management_networks: [], https_redirect: true } },
  schedule: { digest: hex(8), settings: { backup: '0 3 * * *', update_check: '0 4 * * 0', reconcile: '0 * * * *', janitor: '*/10 * * * *', keep_backups: 7 } },
};
const hosts = [{ name: 'sim', url: 'https://127.0.0.1:8006', token_id: 'root@pam!proximity', user: null, has_secret: true, fingerprint: 'AA:BB', ssh: '127.0.0.1:2222', bridge: 'proximity-lan', storage: 'local-lvm', nodes: ['pve1', 'pve2'] }];
const nodes = [
  { host: 'sim', node: 'pve1', status: 'online', cpu: 0.12, mem: 3.2e9, maxmem: 16e9 },
  { host: 'sim', node: 'pve2', status: 'online', cpu: 0.31, mem: 9.5e9, maxmem: 16e9 },
];
const catalog = [
  { id: 'whoami', name: 'Whoami', icon: '🪪', version: '1.10', category: 'Tools', description: 'Tiny web server that prints request details. Good first app.', tags: ['debug', 'http'], web: { port: 8080 }, min: { cores: 1, memory_mb: 256, disk_gb: 2 }, env: [] },
  { id: 'uptime-kuma', name: 'Uptime Kuma', version: '1.23', category: 'Monitoring', description: 'Self-hosted monitoring tool with a fancy status page.', tags: ['monitoring'], web: { port: 3001 }, min: { cores: 1, memory_mb: 512, disk_gb: 4 }, env: [] },
  { id: 'nextcloud', name: 'Nextcloud', version: '29', category: 'Productivity', description: 'Files, calendar and contacts on your own server.', tags: ['files', 'cloud'], web: { port: 8080 }, min: { cores: 2, memory_mb: 2048, disk_gb: 16 },
    env: [{ name: 'NEXTCLOUD_ADMIN_USER', default: 'admin', required: true, field: { label: 'Admin user', type: 'text' } }, { name: 'ADMIN_PASSWORD', secret: { length: 24 }, field: { label: 'Admin password', type: 'password', help: 'Leave empty to generate one.' } }, { name: 'DB_PASSWORD', secret: { length: 32 } }] },
  { id: 'adminer', name: 'Adminer', version: '4.8', category: 'Database', description: 'Database management in a single PHP file.', tags: ['database'], web: { port: 8080 }, min: { cores: 1, memory_mb: 128, disk_gb: 1 }, env: [] },
];
if (!FRESH) users.push({ id: 'usr-admin', username: 'admin', role: 'admin', password: ADMIN_PW, created_at: iso() });

// ---- helpers
const problem = (res, status, detail, errors) => {
  const titles = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 422: 'Unprocessable Content', 429: 'Too Many Requests', 503: 'Service Unavailable' };
  const body = { type: 'about:blank', title: titles[status] ?? 'Error', status, detail };
  if (errors) body.errors = errors;
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify(body));
};
const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(status === 204 ? '' : JSON.stringify(body));
};
const cookies = (req) => Object.fromEntries((req.headers.cookie ?? '').split(';').map((c) => c.trim().split('=')).filter((p) => p[0]).map(([k, ...v]) => [k, v.join('=')]));
const readBody = (req) =>
  new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => {
      try {
        resolve(b ? JSON.parse(b) : {});
      } catch {
        resolve(null);
      }
    });
  });
const userView = (u) => ({ id: u.id, username: u.username, role: u.role, created_at: u.created_at });
function sessionCookies(u) {
  const access = hex(16), refresh = hex(16), csrf = hex(16);
  sessions.set(access, u.id);
  refreshes.set(refresh, u.id);
  return {
    body: { access_token: access, refresh_token: refresh, token_type: 'Bearer', expires_in: 900, user: { id: u.id, username: u.username, role: u.role } },
    cookies: [`proximity_access=${access}; Path=/; HttpOnly; SameSite=Strict`, `proximity_refresh=${refresh}; Path=/api/v1/auth; HttpOnly; SameSite=Strict`, `proximity_csrf=${csrf}; Path=/; SameSite=Strict`],
  };
}
function principal(req) {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) {
    const t = auth.slice(7);
    const uid = sessions.get(t) ?? tokens.find((x) => x.secret === t && !x.revoked)?.user_id;
    return uid ? { user: users.find((u) => u.id === uid), via: 'bearer' } : null;
  }
  const c = cookies(req);
  const uid = sessions.get(c.proximity_access);
  if (!uid) return null;
  return { user: users.find((u) => u.id === uid), via: 'cookie', csrfOk: !!c.proximity_csrf && req.headers['x-csrf-token'] === c.proximity_csrf };
}
const hostnameErr = (h) => (!h ? 'is required' : h.length > 63 ? 'must be at most 63 characters' : !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(h) ? 'must be an RFC 1123 label: a-z, 0-9 and -, not starting or ending with -' : null);
const appView = (a) => ({ ...a, url: `https://${a.hostname}.${DOMAIN}`, owner_name: users.find((u) => u.id === a.owner)?.username });
const log = (p, action, target, result = 'success') => audit.unshift({ id: String(audit.length + 1), ts: now(), time: iso(), actor: p?.user?.username ?? '-', actor_id: p?.user?.id ?? null, action, target, result, source_ip: '127.0.0.1', status: result === 'success' ? 200 : 401 });

function emit(jobId, event, data) {
  for (const res of subscribers.get(jobId) ?? []) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
function runJob(kind, app, owner, stepNames, onDone) {
  const id = `job-${hex(6)}`;
  const job = { id, kind, target: app.id, owner, state: 'queued', steps: stepNames.map((name) => ({ name, state: 'pending', started_at: null, finished_at: null })), progress: 0, error: null, created_at: now(), updated_at: now() };
  jobs.set(id, job);
  app.job_id = id;
  let i = -1;
  const tick = () => {
    if (i >= 0) {
      job.steps[i].state = 'done';
      job.steps[i].finished_at = now();
      emit(id, 'step', { name: job.steps[i].name, state: 'done' });
    } else {
      job.state = 'running';
      emit(id, 'state', { state: 'running' });
    }
    i++;
    if (i < job.steps.length) {
      job.steps[i].state = 'running';
      job.steps[i].started_at = now();
      job.progress = Math.round((i / job.steps.length) * 100);
      emit(id, 'step', { name: job.steps[i].name, state: 'running' });
      emit(id, 'progress', { progress: job.progress });
      emit(id, 'log', { line: `[${kind}] ${job.steps[i].name} ${app.hostname}` });
      setTimeout(tick, STEP_MS);
    } else {
      job.state = 'succeeded';
      job.progress = 100;
      job.finished_at = now();
      app.job_id = null;
      onDone?.();
      emit(id, 'state', { state: 'succeeded' });
      for (const res of subscribers.get(id) ?? []) res.end();
      subscribers.delete(id);
    }
  };
  setTimeout(tick, STEP_MS);
  return job;
}
const accepted = (res, body, job) => json(res, 202, body ?? { job_id: job.id, location: `/api/v1/jobs/${job.id}` }, { location: `/api/v1/jobs/${job.id}` });

// ---- routes
async function api(req, res, url) {
  const m = req.method;
  const p = url.pathname.replace(/\/+$/, '');
  const q = url.searchParams;
  const seg = p.split('/').slice(3); // after /api/v1
  const body = m === 'GET' || m === 'DELETE' ? {} : await readBody(req);
  if (body === null) return problem(res, 400, 'body is not valid JSON');

  // public
  if (p === '/api/v1/system/health') return json(res, 200, { status: 'ok', services: { api: 'ok', dns: 'ok', dhcp: 'ok', proxy: 'ok' }, version: '0.1.0-mock' });
  if (p === '/api/v1/auth/setup' && m === 'GET') return json(res, 200, { needs_setup: users.length === 0 });
  if (p === '/api/v1/auth/setup' && m === 'POST') {
    if (users.length) return problem(res, 409, 'setup is already done; log in instead');
    const errs = {};
    if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(body.username ?? '')) errs.username = 'may contain only lowercase letters, digits, ".", "_" and "-"';
    if ((body.password ?? '').length < 8) errs.password = 'must be at least 8 characters';
    if (Object.keys(errs).length) return problem(res, 422, 'invalid request', errs);
    const u = { id: `usr-${hex(4)}`, username: body.username, role: 'admin', password: body.password, created_at: iso() };
    users.push(u);
    const s = sessionCookies(u);
    res.setHeader('set-cookie', s.cookies);
    return json(res, 201, s.body);
  }
  if (p === '/api/v1/auth/login' && m === 'POST') {
    const u = users.find((x) => x.username === body.username && x.password === body.password);
    log({ user: { username: body.username } }, 'auth.login', body.username, u ? 'success' : 'failure');
    if (!u) return problem(res, 401, 'invalid user name or password');
    const s = sessionCookies(u);
    res.setHeader('set-cookie', s.cookies);
    return json(res, 200, s.body);
  }
  if (p === '/api/v1/auth/refresh' && m === 'POST') {
    const c = cookies(req);
    const uid = refreshes.get(body.refresh_token ?? c.proximity_refresh);
    if (!uid) return problem(res, 401, 'refresh token is invalid or expired');
    if (!body.refresh_token && req.headers['x-csrf-token'] !== c.proximity_csrf) return problem(res, 403, 'missing or wrong CSRF token (X-CSRF-Token header)');
    refreshes.delete(body.refresh_token ?? c.proximity_refresh);
    const s = sessionCookies(users.find((u) => u.id === uid));
    res.setHeader('set-cookie', s.cookies);
    return json(res, 200, s.body);
  }
  if (p === '/api/v1/network/ca.pem') {
    res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-disposition': 'attachment; filename="proximity-ca.pem"' });
    return res.end('-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----\n');
  }
  if (p === '/api/v1/network/ca') return json(res, 200, { pem_url: '/api/v1/network/ca.pem', der_url: '/api/v1/network/ca.der', instructions: [] });

  const pr = principal(req);
  if (!pr?.user) return problem(res, 401, 'not logged in');
  if (m !== 'GET' && pr.via === 'cookie' && !pr.csrfOk) return problem(res, 403, 'missing or wrong CSRF token: send the `proximity_csrf` cookie\'s value in the X-CSRF-Token header');
  const admin = pr.user.role === 'admin';
  const needAdmin = () => (admin ? false : (problem(res, 403, 'this needs the admin role'), true));
  if (m !== 'GET') log(pr, `${seg[0]}.${m.toLowerCase()}`, p);

  if (p === '/api/v1/auth/me') return json(res, 200, userView(pr.user));
  if (p === '/api/v1/auth/logout') {
    res.setHeader('set-cookie', ['proximity_access=; Path=/; Max-Age=0', 'proximity_refresh=; Path=/api/v1/auth; Max-Age=0', 'proximity_csrf=; Path=/; Max-Age=0']);
    sessions.delete(cookies(req).proximity_access);
    return json(res, 204);
  }
  if (p === '/api/v1/auth/password') {
    if (body.current_password !== pr.user.password) return problem(res, 422, 'invalid request', { current_password: 'is wrong' });
    if ((body.new_password ?? '').length < 8) return problem(res, 422, 'invalid request', { new_password: 'must be at least 8 characters' });
    pr.user.password = body.new_password;
    for (const [k, v] of sessions) if (v === pr.user.id) sessions.delete(k);
    return json(res, 204);
  }
  if (p === '/api/v1/system/info') return json(res, 200, { version: '0.1.0-mock', uptime_secs: 100, domain: DOMAIN, lan_address: '10.20.0.1/24', dhcp_range: ['10.20.0.100', '10.20.0.250'], apps: apps.length, users: users.length, plan_generation: 3 });
  if (p === '/api/v1/nodes') return json(res, 200, nodes);

  // users
  if (seg[0] === 'users') {
    if (needAdmin()) return;
    if (seg.length === 1 && m === 'GET') return json(res, 200, users.map(userView));
    if (seg.length === 1 && m === 'POST') {
      const errs = {};
      if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(body.username ?? '')) errs.username = 'must start with a lowercase letter or digit';
      else if (users.some((u) => u.username === body.username)) errs.username = 'is already taken';
      if ((body.password ?? '').length < 8) errs.password = 'must be at least 8 characters';
      if (Object.keys(errs).length) return problem(res, 422, 'invalid request', errs);
      const u = { id: `usr-${hex(4)}`, username: body.username, role: body.role ?? 'user', password: body.password, created_at: iso() };
      users.push(u);
      return json(res, 201, userView(u));
    }
    const u = users.find((x) => x.id === seg[1]);
    if (!u) return problem(res, 404, `no user ${seg[1]}`);
    if (m === 'PATCH') {
      if (body.role) u.role = body.role;
      if (body.password) u.password = body.password;
      return json(res, 200, userView(u));
    }
    if (m === 'DELETE') {
      users.splice(users.indexOf(u), 1);
      return json(res, 204);
    }
    return json(res, 200, userView(u));
  }
  // tokens
  if (seg[0] === 'tokens') {
    if (seg.length === 1 && m === 'GET') return json(res, 200, tokens.filter((t) => t.user_id === pr.user.id).map(({ secret, user_id, ...t }) => t));
    if (seg.length === 1 && m === 'POST') {
      if (!body.name?.trim()) return problem(res, 422, 'invalid request', { name: 'is required' });
      const t = { id: `tok-${hex(4)}`, user_id: pr.user.id, name: body.name, scopes: body.scopes ?? ['read'], created_at: iso(), expires_at: body.expires_in_days ? iso(now() + body.expires_in_days * 86400) : null, last_used_at: null, revoked: false };
      t.secret = `pxt_${t.id}_${hex(16)}`;
      tokens.push(t);
      const { secret, user_id, ...info } = t;
      return json(res, 201, { token: secret, info });
    }
    const t = tokens.find((x) => x.id === seg[1] && x.user_id === pr.user.id);
    if (!t) return problem(res, 404, 'no such token');
    t.revoked = true;
    return json(res, 204);
  }
  // catalog
  if (seg[0] === 'catalog') {
    if (seg[1] === 'categories') return json(res, 200, [...new Set(catalog.map((c) => c.category))].sort());
    if (seg[1] === 'reload') return admin ? json(res, 200, { apps: catalog.length }) : problem(res, 403, 'admin only');
    if (seg[1] === 'search') return json(res, 200, catalog.filter((c) => c.name.toLowerCase().includes((q.get('q') ?? '').toLowerCase())));
    if (seg[1]) {
      const c = catalog.find((x) => x.id === seg[1]);
      return c ? json(res, 200, c) : problem(res, 404, `no catalog app ${seg[1]}`);
    }
    return json(res, 200, catalog);
  }
  // jobs
  if (seg[0] === 'jobs') {
    if (!seg[1]) return json(res, 200, [...jobs.values()].filter((j) => admin || j.owner === pr.user.id).sort((a, b) => b.created_at - a.created_at).slice(0, Number(q.get('limit') ?? 50)));
    const j = jobs.get(seg[1]);
    if (!j || (!admin && j.owner !== pr.user.id)) return problem(res, 404, `no job ${seg[1]}`);
    if (seg[2] === 'events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(`event: snapshot\ndata: ${JSON.stringify(j)}\n\n`);
      if (['succeeded', 'failed', 'cancelled'].includes(j.state)) return res.end();
      if (!subscribers.has(j.id)) subscribers.set(j.id, new Set());
      subscribers.get(j.id).add(res);
      req.on('close', () => subscribers.get(j.id)?.delete(res));
      return;
    }
    return json(res, 200, j);
  }
  // apps
  if (seg[0] === 'apps') {
    const visible = apps.filter((a) => admin || a.owner === pr.user.id);
    if (seg.length === 1 && m === 'GET') {
      const s = (q.get('search') ?? '').toLowerCase();
      const st = q.get('status');
      const list = visible.filter((a) => (!s || a.hostname.includes(s) || a.catalog_id.includes(s)) && (!st || a.status === st));
      const page = Number(q.get('page') ?? 1), per = Number(q.get('per_page') ?? 50);
      return json(res, 200, { items: list.slice((page - 1) * per, page * per).map(appView), total: list.length, page, per_page: per });
    }
    if (seg.length === 1 && m === 'POST') {
      const c = catalog.find((x) => x.id === body.catalog_id);
      const errs = {};
      if (!c) errs.catalog_id = 'is not in the catalog';
      const he = hostnameErr(body.hostname);
      if (he) errs.hostname = he;
      else if (apps.some((a) => a.hostname === body.hostname)) errs.hostname = 'is already used by another app';
      const r = body.resources ?? c?.min;
      if (c && r) for (const k of ['cores', 'memory_mb', 'disk_gb']) if (r[k] < c.min[k]) errs[`resources.${k}`] = `must be at least ${c.min[k]}`;
      if (body.node && !nodes.some((n) => n.node === body.node)) errs.node = 'is not a known node';
      if (Object.keys(errs).length) return problem(res, 422, 'invalid request', errs);
      const n = apps.length + 1;
      const a = { id: `app-${hex(6)}`, hostname: body.hostname, catalog_id: c.id, catalog_version: c.version, owner: pr.user.id, status: 'deploying', host: 'sim', node: body.node ?? 'pve1', vmid: 100 + n, ip: `10.20.0.${100 + n}`, mac: '02:50:58:00:00:01', web_port: c.web?.port, forwards: [], aliases: [], resources: r, settings: body.values ?? {}, error: null, job_id: null, adopted: false, created_at: iso(), updated_at: iso(), frameable: true };
      apps.push(a);
      backups.set(a.id, []);
      const job = runJob('deploy', a, pr.user.id, ['reserve_address', 'create_container', 'set_features', 'start_container', 'install_docker', 'push_compose', 'compose_up', 'wait_healthy', 'publish'], () => (a.status = 'running'));
      return accepted(res, appView(a), job);
    }
    const a = visible.find((x) => x.id === seg[1]);
    if (!a) return problem(res, 404, `no app ${seg[1]}`);
    if (seg.length === 2 && m === 'GET') return json(res, 200, appView(a));
    if (seg.length === 2 && m === 'DELETE') {
      a.status = 'deleting';
      const job = runJob('delete', a, pr.user.id, ['stop_container', 'destroy_container', 'release_address'], () => apps.splice(apps.indexOf(a), 1));
      return accepted(res, null, job);
    }
    const sub = seg[2];
    if (a.job_id && ['action', 'clone', 'update', 'backups'].includes(sub) && m === 'POST') return problem(res, 409, `${a.hostname} is busy with job ${a.job_id}`);
    if (sub === 'action') {
      if (!['start', 'stop', 'restart'].includes(body.action)) return problem(res, 422, 'invalid request', { action: 'must be start, stop or restart' });
      a.status = 'changing';
      const job = runJob(body.action, a, pr.user.id, [body.action === 'start' ? 'start_container' : body.action === 'stop' ? 'stop_container' : 'reboot_container', 'wait_healthy'], () => (a.status = body.action === 'stop' ? 'stopped' : 'running'));
      return accepted(res, null, job);
    }
    if (sub === 'update') {
      a.status = 'updating';
      return accepted(res, null, runJob('update', a, pr.user.id, ['backup', 'compose_pull', 'compose_up', 'wait_healthy'], () => (a.status = 'running')));
    }
    if (sub === 'clone') {
      const he = hostnameErr(body.hostname) ?? (apps.some((x) => x.hostname === body.hostname) ? 'is already used by another app' : null);
      if (he) return problem(res, 422, 'invalid request', { hostname: he });
      const b = { ...a, id: `app-${hex(6)}`, hostname: body.hostname, status: 'deploying', vmid: a.vmid + 50, created_at: iso() };
      apps.push(b);
      backups.set(b.id, []);
      return accepted(res, appView(b), runJob('clone', b, pr.user.id, ['clone_container', 'start_container', 'publish'], () => (b.status = 'running')));
    }
    if (sub === 'logs') return json(res, 200, { logs: Array.from({ length: Math.min(30, Number(q.get('tail') ?? 200)) }, (_, i) => `${iso(now() - 30 + i)} ${a.catalog_id}-1 | request ${i} served`).join('\n') });
    if (sub === 'metrics') {
      const t0 = now() - 3600;
      return json(res, 200, { timeframe: q.get('timeframe') ?? 'hour', data: Array.from({ length: 60 }, (_, i) => ({ time: t0 + i * 60, cpu: 0.05 + 0.04 * Math.sin(i / 6), mem: 2e8 + 3e7 * Math.cos(i / 9), maxmem: (a.resources?.memory_mb ?? 512) * 1048576 })) });
    }
    if (sub === 'exec') {
      const out = { ps: 'NAME STATUS\nweb  Up 5 minutes', disk_usage: 'Filesystem Size Used Avail Use% Mounted on\n/dev/loop0 8.0G 1.2G 6.8G 15% /', uptime: ' 05:00:00 up 1 day, load average: 0.01, 0.02, 0.00', logs: 'web-1 | ready', images: 'REPOSITORY TAG\nadminer latest', restart_compose: 'Restarting web-1 ... done' }[body.command];
      if (out === undefined) return problem(res, 422, 'invalid request', { command: 'must be one of logs, ps, disk_usage, restart_compose, images, uptime' });
      return json(res, 200, { command: body.command, status: 0, output: out });
    }
    if (sub === 'backups') {
      const list = backups.get(a.id);
      if (!seg[3] && m === 'GET') return json(res, 200, list);
      if (seg[3] === 'stats') return json(res, 200, { total_backups: list.length, total_size: list.reduce((s, b) => s + b.size, 0), in_progress_backups: a.status === 'backing_up' ? 1 : 0, failed_backups: 0, keep: 7, newest: list[0]?.created_at ?? null, oldest: list.at(-1)?.created_at ?? null });
      if (!seg[3] && m === 'POST') {
        const b = { id: `bak-${hex(4)}`, app_id: a.id, volid: `local:backup/vzdump-lxc-${a.vmid}.tar.zst`, size: 0, created_at: iso(), status: 'creating' };
        list.unshift(b);
        a.status = 'backing_up';
        return accepted(res, null, runJob('backup', a, pr.user.id, ['vzdump', 'record'], () => { b.status = 'available'; b.size = 123456789; a.status = 'running'; }));
      }
      const b = list.find((x) => x.id === seg[3]);
      if (!b) return problem(res, 404, `no backup ${seg[3]}`);
      if (m === 'DELETE') { list.splice(list.indexOf(b), 1); return json(res, 204); }
      if (seg[4] === 'restore') { a.status = 'restoring'; return accepted(res, null, runJob('restore', a, pr.user.id, ['stop_container', 'restore', 'start_container'], () => (a.status = 'running'))); }
      return json(res, 200, b);
    }
    return problem(res, 404, `no API endpoint ${p}`);
  }
  // admin areas
  if (['network', 'settings', 'hosts', 'audit'].includes(seg[0]) && needAdmin()) return;
  if (seg[0] === 'network') {
    const live = apps.filter((a) => a.status !== 'deleting');
    if (seg[1] === 'leases') return json(res, 200, live.map((a) => ({ mac: a.mac, ip: a.ip, hostname: a.hostname, kind: 'reserved' })));
    if (seg[1] === 'records') return json(res, 200, live.map((a) => ({ name: `${a.hostname}.${DOMAIN}`, ip: '10.20.0.1', proxied: true, app_id: a.id })));
    if (seg[1] === 'routes') return json(res, 200, live.map((a) => ({ host: `${a.hostname}.${DOMAIN}`, upstream: `${a.ip}:${a.web_port}`, app_id: a.id, app_name: a.hostname, https_redirect: true })));
    if (seg[1] === 'forwards') return json(res, 200, []);
    if (seg[1] === 'firewall') return json(res, 200, { enabled: true, service: 'ok', forwards: 0, management_networks: ['192.168.1.0/24'], generation: 3 });
    if (seg[1] === 'self-test') return json(res, 200, { ok: true, checks: [{ name: 'dns', ok: true, detail: 'whoami.prox.local resolves' }, { name: 'proxy', ok: true, detail: 'routes answer' }, { name: 'dhcp', ok: true, detail: 'listening on eth1' }] });
  }
  if (seg[0] === 'settings') {
    const s = settings[seg[1]];
    if (!s) return problem(res, 404, `no settings section ${seg[1]}`);
    if (m === 'GET') return json(res, 200, s);
    if (body.digest !== s.digest) return problem(res, 409, 'settings changed since you read them');
    const errs = {};
    for (const [k, v] of Object.entries(body.settings ?? {})) {
      if (!(k in s.settings)) errs[`settings.${k}`] = 'unknown field';
      else if (typeof v !== typeof s.settings[k]) errs[`settings.${k}`] = `must be a ${typeof s.settings[k]}`;
    }
    if (seg[1] === 'resources' && body.settings?.cores < 1) errs['settings.cores'] = 'must be at least 1';
    if (Object.keys(errs).length) return problem(res, 422, 'invalid request', errs);
    settings[seg[1]] = { digest: hex(8), settings: body.settings };
    return json(res, 200, settings[seg[1]]);
  }
  if (seg[0] === 'hosts') {
    if (!seg[1] && m === 'GET') return json(res, 200, hosts);
    if (!seg[1] && m === 'POST') {
      if (hosts.some((h) => h.name === body.name)) return problem(res, 422, 'invalid request', { name: 'already exists' });
      const h = { name: body.name, url: body.url, token_id: body.token_id, user: null, has_secret: !!body.token_secret, fingerprint: body.fingerprint ?? null, ssh: body.ssh ?? null, bridge: body.bridge ?? 'proximity-lan', storage: body.storage ?? 'local-lvm', nodes: [] };
      hosts.push(h);
      return json(res, 201, h);
    }
    const h = hosts.find((x) => x.name === seg[1]);
    if (!h) return problem(res, 404, `no host ${seg[1]}`);
    if (seg[2] === 'test') return json(res, 200, { api_ok: true, version: '8.2.4', ssh_ok: true, error: null });
    if (seg[2] === 'sync') return json(res, 200, h);
    if (m === 'DELETE') { hosts.splice(hosts.indexOf(h), 1); return json(res, 204); }
    if (m === 'PUT') { Object.assign(h, body); return json(res, 200, h); }
    return json(res, 200, h);
  }
  if (seg[0] === 'audit') {
    const u = q.get('actor'), a = q.get('action'), r = q.get('result');
    const list = audit.filter((e) => (!u || e.actor === u) && (!a || (a.endsWith('.') ? e.action.startsWith(a) : e.action === a)) && (!r || e.result === r));
    return json(res, 200, { items: list.slice(0, 50), total: list.length });
  }
  return problem(res, 404, `no API endpoint ${p}`);
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' };
function statics(req, res, url) {
  const rel = decodeURIComponent(url.pathname).replace(/^\/+/, '');
  const f = join(DIST, rel);
  if (rel && !rel.includes('..') && existsSync(f) && statSync(f).isFile()) {
    res.writeHead(200, { 'content-type': TYPES[extname(f)] ?? 'application/octet-stream' });
    return res.end(readFileSync(f));
  }
  if (rel.split('/').pop().includes('.')) return problem(res, 404, 'not found');
  const index = join(DIST, 'index.html');
  if (!existsSync(index)) return problem(res, 503, 'web/dist missing: run npm run build');
  res.writeHead(200, { 'content-type': TYPES['.html'] });
  res.end(readFileSync(index));
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  (url.pathname.startsWith('/api/') ? api(req, res, url) : Promise.resolve(statics(req, res, url))).catch((e) => {
    console.error(e);
    if (!res.headersSent) problem(res, 500, String(e));
  });
});
// Console: a minimal RFC 6455 server speaking the protocol of src/lib/console.ts, with a toy
// shell (echo, hostname, exit) so the browser test can type `echo ok` and read `ok`.
function wsFrame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : len < 65536 ? Buffer.from([0x80 | opcode, 126, len >> 8, len & 255]) : null;
  if (!head) throw new Error('frame too large');
  return Buffer.concat([head, payload]);
}
server.on('upgrade', (req, sock) => {
  const url = new URL(req.url, 'http://x');
  const m = url.pathname.match(/^\/api\/v1\/apps\/([^/]+)\/console$/);
  const pr = principal(req);
  const a = m && apps.find((x) => x.id === decodeURIComponent(m[1]));
  if (!m || !pr?.user || !a || (pr.user.role !== 'admin' && a.owner !== pr.user.id) || url.searchParams.get('csrf') !== cookies(req).proximity_csrf) {
    sock.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  log(pr, 'app.console', a.id);
  const out = (t) => sock.write(wsFrame(2, Buffer.from(t)));
  const prompt = () => out(`${a.hostname}:/# `);
  out(`Welcome to ${a.hostname} (mock console)\r\n`);
  prompt();
  let line = '';
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2) {
      const op = buf[0] & 15;
      let len = buf[1] & 127, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { sock.destroy(); return; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len).map((b, i) => b ^ mask[i % 4]));
      buf = buf.subarray(off + 4 + len);
      if (op === 8) { sock.end(wsFrame(8, Buffer.from([3, 232]))); return; }
      if (op === 1) continue; // resize control
      if (op !== 2) continue;
      for (const ch of data.toString()) {
        if (ch === '\r') {
          out('\r\n');
          const cmd = line.trim();
          line = '';
          if (cmd === 'exit') { sock.write(wsFrame(1, Buffer.from(JSON.stringify({ type: 'exit', reason: 'the shell exited' })))); sock.end(wsFrame(8, Buffer.from([3, 232]))); return; }
          if (cmd.startsWith('echo ')) out(cmd.slice(5) + '\r\n');
          else if (cmd === 'hostname') out(a.hostname + '\r\n');
          else if (cmd) out(`sh: ${cmd.split(' ')[0]}: not found\r\n`);
          prompt();
        } else if (ch === '\x7f') { if (line) { line = line.slice(0, -1); out('\b \b'); } }
        else { line += ch; out(ch); }
      }
    }
  });
  sock.on('error', () => {});
});

server.listen(Number(port), host, () => {
  const a = server.address();
  console.log(`ready http://${a.address}:${a.port} (admin / ${FRESH ? '<first-run setup>' : ADMIN_PW})`);
});
