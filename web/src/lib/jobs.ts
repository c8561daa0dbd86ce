// Live job progress: SSE from GET /api/v1/jobs/{id}/events plus a slow poll of the job
// record, both folded into one state by a pure reducer.
import { writable, type Readable } from 'svelte/store';
import { api, API } from './api';
import { jobDone, normalizeJob, type Job } from './model';

export interface JobView {
  job: Job | null;
  logs: string[];
  done: boolean;
  connected: boolean;
  error: string | null;
}

export const emptyView = (): JobView => ({ job: null, logs: [], done: false, connected: false, error: null });

const MAX_LOG = 2000;

/** Fold one event (`job.step`, `job.log`, `job.state`, or a full job snapshot) into the view. */
export function applyEvent(v: JobView, kind: string, data: any): JobView {
  const k = kind.replace(/^job\./, '');
  let payload = data && typeof data === 'object' && data.data && typeof data.data === 'object' && !data.steps ? data.data : data;
  // A lagged stream resynchronises with `snapshot {lagged, job}`.
  if (payload && typeof payload === 'object' && payload.job && typeof payload.job === 'object' && !payload.steps) payload = payload.job;
  const next: JobView = { ...v };
  if (k === 'log') {
    const line = typeof payload === 'string' ? payload : String(payload?.line ?? payload?.message ?? payload?.text ?? JSON.stringify(payload));
    next.logs = [...v.logs, ...line.split('\n').filter((l: string, i: number, a: string[]) => l !== '' || i < a.length - 1)].slice(-MAX_LOG);
    return next;
  }
  if (k === 'progress') {
    if (v.job && typeof payload?.progress === 'number') next.job = { ...v.job, progress: payload.progress };
    return next;
  }
  if (k === 'step') {
    if (!v.job) return next;
    const name = String(payload?.name ?? payload?.step ?? '');
    const state = String(payload?.state ?? payload?.status ?? 'running');
    const steps = v.job.steps.slice();
    const i = steps.findIndex((s) => s.name === name);
    const s = { ...(i >= 0 ? steps[i] : { name }), state, message: payload?.message ?? steps[i]?.message };
    if (i >= 0) steps[i] = s as Job['steps'][number];
    else if (name) steps.push(s as Job['steps'][number]);
    next.job = { ...v.job, steps, progress: typeof payload?.progress === 'number' ? payload.progress : v.job.progress };
    return next;
  }
  if (k === 'state' || k === 'snapshot' || k === 'message' || k === 'job') {
    if (payload && typeof payload === 'object' && payload.id && (payload.steps || payload.kind)) {
      next.job = normalizeJob(payload);
    } else if (v.job && payload) {
      const state = String(payload?.state ?? payload?.status ?? v.job.state);
      next.job = { ...v.job, state, error: payload?.error ?? v.job.error, progress: typeof payload?.progress === 'number' ? payload.progress : state === 'succeeded' ? 100 : v.job.progress };
    }
    if (next.job && jobDone(next.job.state)) next.done = true;
    return next;
  }
  if (k === 'done' || k === 'end') {
    next.done = true;
    return next;
  }
  return next;
}

/** Follow a job until it ends. Call `stop()` when the view goes away. */
export function followJob(id: string, pollMs = 2000): Readable<JobView> & { stop: () => void } {
  let view = emptyView();
  const store = writable(view);
  const set = (v: JobView) => {
    view = v;
    store.set(v);
  };
  let es: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;

  const poll = async () => {
    if (stopped) return;
    try {
      const j = normalizeJob(await api.get(`${API}/jobs/${encodeURIComponent(id)}`));
      // Keep step states from SSE when the poll is older, but never regress a finished job.
      set({ ...view, job: j, done: view.done || jobDone(j.state), error: null });
    } catch (e) {
      set({ ...view, error: (e as Error).message });
    }
    if (!stopped && !view.done) timer = setTimeout(poll, view.connected ? pollMs * 3 : pollMs);
    else close();
  };

  const close = () => {
    es?.close();
    es = null;
  };

  if (typeof EventSource !== 'undefined') {
    es = new EventSource(`${API}/jobs/${encodeURIComponent(id)}/events`, { withCredentials: true });
    const on = (kind: string) => (ev: MessageEvent) => {
      let data: any = ev.data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        /* plain text line */
      }
      const k = kind === 'message' && data && typeof data === 'object' && typeof data.kind === 'string' ? data.kind : kind;
      set(applyEvent(view, k, data));
      if (view.done) {
        close();
        // One last poll for the final record (steps, error).
        if (timer) clearTimeout(timer);
        timer = setTimeout(poll, 200);
      }
    };
    for (const k of ['message', 'snapshot', 'step', 'progress', 'log', 'state', 'job.step', 'job.progress', 'job.log', 'job.state', 'done', 'end']) es.addEventListener(k, on(k) as EventListener);
    es.onopen = () => set({ ...view, connected: true });
    es.onerror = () => {
      set({ ...view, connected: false });
      // Browser retries by itself; once the job is over stop it.
      if (view.done) close();
    };
  }
  poll();

  return {
    subscribe: store.subscribe,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      close();
    },
  };
}
