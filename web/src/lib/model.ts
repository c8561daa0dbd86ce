// Typed views of API objects. The normalizers accept the documented shapes (DESIGN §10,
// CONTRACTS.md, src/api/openapi.json) and tolerate close variants so the UI degrades
// gracefully instead of breaking when a field is renamed.

import type { Resources } from './validate';

type O = Record<string, any>;
const num = (...v: unknown[]): number | undefined => {
  for (const x of v) {
    if (typeof x === 'number' && isFinite(x)) return x;
    if (typeof x === 'string' && x.trim() !== '' && isFinite(Number(x))) return Number(x);
  }
  return undefined;
};
const str = (...v: unknown[]): string | undefined => {
  for (const x of v) if (typeof x === 'string' && x) return x;
  return undefined;
};

export type Role = 'admin' | 'user' | string;
export interface User {
  id: string;
  username: string;
  role: Role;
  created_at?: number | string;
}

export interface FormField {
  name: string;
  label: string;
  description?: string;
  default?: string;
  required: boolean;
  secret: boolean;
  /** "text" | "password" | "number" | "select" | "boolean" */
  type: string;
  options?: string[];
}

export interface CatalogEntry {
  id: string;
  name: string;
  description: string;
  version: string;
  category: string;
  tags: string[];
  icon?: string;
  homepage?: string;
  web_port?: number;
  min: Resources;
  fields: FormField[];
}

export function normalizeField(f: O, key?: string): FormField | null {
  const name = str(f.name, f.key, f.env, key);
  if (!name) return null;
  // Catalog YAML (src/catalog EnvSpec): {name, default, required, secret: {length}, field: {label, type, options, help}}
  const fs: O = f.field && typeof f.field === 'object' ? f.field : f;
  const opts = Array.isArray(fs.options) && fs.options.length ? fs.options : Array.isArray(fs.choices) ? fs.choices : undefined;
  const options = opts ? opts.map(String) : undefined;
  const secret = !!(f.secret || f.generate || f.generated);
  return {
    name,
    label: str(fs.label, fs.title, fs.prompt) ?? name,
    description: str(fs.help, fs.description, f.description) ?? (secret ? 'Leave empty to generate one.' : undefined),
    default: f.default === undefined || f.default === null ? undefined : String(f.default),
    // A generated secret is never required from the user.
    required: !!(f.required ?? fs.required) && !secret,
    secret,
    type: (str(fs.type, fs.kind) ?? (options ? 'select' : secret ? 'password' : 'text')).toLowerCase(),
    options,
  };
}

export function normalizeCatalog(e: O): CatalogEntry {
  const m: O = e.min_resources ?? e.resources ?? e.min ?? e.requirements ?? {};
  const rawFields: O[] = Array.isArray(e.fields)
    ? e.fields
    : Array.isArray(e.form)
      ? e.form
      : Array.isArray(e.env)
        ? e.env.filter((v: O) => v && (v.field || v.form || v.user || v.label || v.prompt))
        : e.env && typeof e.env === 'object'
          ? Object.entries(e.env as O)
              .filter(([, v]) => v && typeof v === 'object' && ((v as O).form || (v as O).label || (v as O).prompt) && !(v as O).secret)
              .map(([k, v]) => ({ ...(v as O), name: k }))
          : [];
  return {
    id: String(e.id),
    name: str(e.name, e.title) ?? String(e.id),
    description: str(e.description, e.summary) ?? '',
    version: str(e.version) ?? '',
    category: str(e.category) ?? 'Other',
    tags: Array.isArray(e.tags) ? e.tags.map(String) : [],
    icon: str(e.icon, e.icon_url, e.logo),
    homepage: str(e.homepage, e.website),
    web_port: num(e.web_port, e.web?.port, e.web),
    min: {
      cores: num(m.cores, m.cpu, e.min_cores) ?? 1,
      memory_mb: num(m.memory_mb, m.memory, m.ram_mb, e.min_memory) ?? 512,
      disk_gb: num(m.disk_gb, m.disk, e.min_disk) ?? 4,
    },
    fields: rawFields.map((f) => normalizeField(f)).filter((f): f is FormField => !!f),
  };
}

export interface App {
  id: string;
  hostname: string;
  catalog_id: string;
  catalog_version?: string;
  status: string;
  owner?: string;
  owner_name?: string;
  node?: string;
  host?: string;
  vmid?: number;
  ip?: string;
  url?: string;
  web_port?: number;
  resources?: Resources;
  error?: string;
  job_id?: string;
  frameable?: boolean;
  aliases: string[];
  forwards: { public: number; container: number; proto: string }[];
  created_at?: number | string;
  updated_at?: number | string;
  update_available?: boolean;
}

export function normalizeApp(a: O): App {
  const r: O | undefined = a.resources;
  return {
    id: String(a.id),
    hostname: str(a.hostname, a.name) ?? String(a.id),
    catalog_id: str(a.catalog_id, a.catalog) ?? '',
    catalog_version: str(a.catalog_version, a.version),
    status: str(a.status) ?? 'unknown',
    owner: str(a.owner, a.owner_id),
    owner_name: str(a.owner_name, a.owner_username),
    node: str(a.node),
    host: str(a.host),
    vmid: num(a.vmid),
    ip: str(a.ip, a.address),
    url: str(a.url, a.public_url),
    web_port: num(a.web_port),
    resources: r ? { cores: num(r.cores) ?? 0, memory_mb: num(r.memory_mb, r.memory) ?? 0, disk_gb: num(r.disk_gb, r.disk) ?? 0 } : undefined,
    error: str(a.error),
    job_id: str(a.job_id),
    frameable: typeof a.frameable === 'boolean' ? a.frameable : typeof a.embeddable === 'boolean' ? a.embeddable : typeof a.allow_framing === 'boolean' ? a.allow_framing : undefined,
    aliases: Array.isArray(a.aliases) ? a.aliases.map(String) : [],
    forwards: Array.isArray(a.forwards) ? a.forwards : [],
    created_at: a.created_at,
    updated_at: a.updated_at,
    update_available: !!a.update_available,
  };
}

/** Public address of an app. */
export function appUrl(a: Pick<App, 'hostname' | 'url'>, domain = 'prox.local'): string {
  return a.url ?? `https://${a.hostname}.${domain}`;
}

export interface JobStep {
  name: string;
  state: string;
  started_at?: number | string;
  finished_at?: number | string;
  message?: string;
}
export interface Job {
  id: string;
  kind: string;
  target?: string;
  owner?: string;
  state: string;
  steps: JobStep[];
  progress: number;
  error?: string;
  created_at?: number | string;
  finished_at?: number | string;
}

export function normalizeJob(j: O): Job {
  return {
    id: String(j.id),
    kind: str(j.kind, j.type) ?? 'job',
    target: str(j.target, j.app_id),
    owner: str(j.owner),
    state: str(j.state, j.status) ?? 'queued',
    steps: Array.isArray(j.steps)
      ? j.steps.map((s: O) => ({ name: str(s.name, s.title) ?? '?', state: str(s.state, s.status) ?? 'pending', started_at: s.started_at, finished_at: s.finished_at, message: str(s.message) }))
      : [],
    progress: num(j.progress) ?? 0,
    error: str(j.error),
    created_at: j.created_at,
    finished_at: j.finished_at ?? j.updated_at,
  };
}

export const jobDone = (s: string) => ['succeeded', 'failed', 'cancelled', 'success', 'error'].includes(s);

export interface NodeInfo {
  name: string;
  host?: string;
  status: string;
  cpu?: number; // 0..1
  maxcpu?: number;
  mem?: number;
  maxmem?: number;
  disk?: number;
  maxdisk?: number;
  uptime?: number;
  apps?: number;
}

export function normalizeNode(n: O): NodeInfo {
  return {
    name: str(n.node, n.name) ?? '?',
    host: str(n.host, n.host_name, n.host_id),
    status: str(n.status) ?? (n.online === false ? 'offline' : 'online'),
    cpu: num(n.cpu, n.cpu_usage),
    maxcpu: num(n.maxcpu, n.cpus, n.cores),
    mem: num(n.mem, n.memory_used, n.memory?.used),
    maxmem: num(n.maxmem, n.memory_total, n.memory?.total),
    disk: num(n.disk, n.disk_used, n.disk?.used),
    maxdisk: num(n.maxdisk, n.disk_total, n.disk?.total),
    uptime: num(n.uptime),
    apps: num(n.apps, n.app_count),
  };
}

export interface MetricPoint {
  t: number; // unix seconds
  cpu: number | null; // 0..1
  mem: number | null; // bytes
  maxmem: number | null;
}

/** Metrics may be PVE rrddata-like rows or `{points:[...]}` / `{series:{cpu:[[t,v]]}}`. */
export function normalizeMetrics(x: unknown): MetricPoint[] {
  const o = x as O;
  const rows: O[] = Array.isArray(o) ? o : Array.isArray(o?.points) ? o.points : Array.isArray(o?.data) ? o.data : Array.isArray(o?.items) ? o.items : [];
  if (!rows.length && o?.series) {
    const cpu: [number, number][] = o.series.cpu ?? [];
    const mem: [number, number][] = o.series.mem ?? o.series.memory ?? [];
    return cpu.map(([t, v], i) => ({ t, cpu: v, mem: mem[i]?.[1] ?? null, maxmem: num(o.maxmem) ?? null }));
  }
  return rows
    .map((r) => ({
      t: num(r.time, r.t, r.timestamp) ?? 0,
      cpu: num(r.cpu) ?? null,
      mem: num(r.mem, r.memory) ?? null,
      maxmem: num(r.maxmem, r.memory_max) ?? null,
    }))
    .filter((p) => p.t > 0)
    .sort((a, b) => a.t - b.t);
}
