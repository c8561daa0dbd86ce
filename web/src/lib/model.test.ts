import { describe, expect, it } from 'vitest';
import { appUrl, normalizeApp, normalizeCatalog, normalizeJob, normalizeMetrics, normalizeNode } from './model';
import { applyEvent, emptyView, type JobView } from './jobs';

describe('normalizers', () => {
  it('catalog entry with min resources and form fields', () => {
    const e = normalizeCatalog({
      id: 'whoami', name: 'Whoami', category: 'Tools', description: 'echo', version: '1.0',
      min_resources: { cores: 1, memory_mb: 256, disk_gb: 2 },
      env: [{ name: 'TITLE', label: 'Title', default: 'x', form: true }, { name: 'PW', secret: true }],
    });
    expect(e.min).toEqual({ cores: 1, memory_mb: 256, disk_gb: 2 });
    expect(e.fields.map((f) => f.name)).toEqual(['TITLE']);
    expect(e.fields[0].label).toBe('Title');
  });
  it('catalog YAML shape: web.port, min, env with field and secret', () => {
    const e = normalizeCatalog({
      id: 'code-server', name: 'code-server', icon: '💻', web: { port: 8080 }, min: { cores: 2, memory_mb: 2048, disk_gb: 10 },
      env: [
        { name: 'PASSWORD', secret: { length: 24 }, field: { label: 'Login password', type: 'password', help: 'Leave empty to generate one.' } },
        { name: 'TZ', default: 'UTC', required: true, field: { label: 'Time zone', type: 'select', options: ['UTC', 'Europe/Paris'] } },
        { name: 'INTERNAL', default: 'x' },
      ],
    });
    expect(e.web_port).toBe(8080);
    expect(e.min).toEqual({ cores: 2, memory_mb: 2048, disk_gb: 10 });
    expect(e.fields.map((f) => [f.name, f.type, f.required, f.secret])).toEqual([['PASSWORD', 'password', false, true], ['TZ', 'select', true, false]]);
    expect(e.fields[1].options).toEqual(['UTC', 'Europe/Paris']);
    expect(e.fields[0].description).toMatch(/generate/);
  });
  it('catalog defaults when minimums are missing', () => {
    expect(normalizeCatalog({ id: 'x' }).min).toEqual({ cores: 1, memory_mb: 512, disk_gb: 4 });
  });
  it('app record from the registry', () => {
    const a = normalizeApp({ id: 'app-1', hostname: 'web', catalog_id: 'nginx', status: 'running', resources: { cores: 2, memory_mb: 1024, disk_gb: 8 }, vmid: 101 });
    expect(a.resources?.memory_mb).toBe(1024);
    expect(appUrl(a)).toBe('https://web.prox.local');
    expect(appUrl(a, 'lab.lan')).toBe('https://web.lab.lan');
  });
  it('nodes like PVE', () => {
    const n = normalizeNode({ node: 'pve1', status: 'online', cpu: 0.1, maxcpu: 4, mem: 1, maxmem: 2 });
    expect(n.name).toBe('pve1');
    expect(n.maxmem).toBe(2);
  });
  it('metrics rows sorted by time', () => {
    const m = normalizeMetrics([{ time: 20, cpu: 0.5, mem: 10, maxmem: 100 }, { time: 10, cpu: '0.25', mem: 5 }]);
    expect(m.map((p) => p.t)).toEqual([10, 20]);
    expect(m[0].cpu).toBe(0.25);
    expect(normalizeMetrics({ points: [{ t: 1, cpu: 0 }] })).toHaveLength(1);
  });
});

describe('job event reducer', () => {
  const job = normalizeJob({ id: 'j1', kind: 'deploy', state: 'running', steps: [{ name: 'create', state: 'running' }, { name: 'start', state: 'pending' }] });
  it('updates steps, appends logs, ends on final state', () => {
    let v: JobView = { ...emptyView(), job };
    v = applyEvent(v, 'job.step', { name: 'create', state: 'succeeded' });
    expect(v.job!.steps[0].state).toBe('succeeded');
    v = applyEvent(v, 'job.log', { line: 'pulling image' });
    v = applyEvent(v, 'job.log', 'plain text');
    expect(v.logs).toEqual(['pulling image', 'plain text']);
    expect(v.done).toBe(false);
    v = applyEvent(v, 'job.state', { state: 'succeeded' });
    expect(v.done).toBe(true);
    expect(v.job!.progress).toBe(100);
  });
  it('accepts envelope {kind, subject, data} and full snapshots', () => {
    let v: JobView = { ...emptyView(), job };
    v = applyEvent(v, 'job.step', { kind: 'job.step', subject: 'j1', data: { name: 'start', state: 'running' } });
    expect(v.job!.steps[1].state).toBe('running');
    v = applyEvent(v, 'snapshot', { id: 'j1', kind: 'deploy', state: 'failed', error: 'boom', steps: [] });
    expect(v.done).toBe(true);
    expect(v.job!.error).toBe('boom');
  });
  it('handles progress events and lagged snapshots', () => {
    let v: JobView = { ...emptyView(), job };
    v = applyEvent(v, 'progress', { progress: 40 });
    expect(v.job!.progress).toBe(40);
    v = applyEvent(v, 'snapshot', { lagged: 3, job: { id: 'j1', kind: 'deploy', state: 'succeeded', progress: 100, steps: [{ name: 'create', state: 'done' }] } });
    expect(v.done).toBe(true);
    expect(v.job!.steps[0].state).toBe('done');
  });
});
