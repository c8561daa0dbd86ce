// Pure formatters used across pages.

/** Bytes → "1.5 GiB". */
export function bytes(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  if (n < 0) n = 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(digits)} ${units[i]}`;
}

/** MiB → "512 MiB" / "2 GiB". */
export function mib(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024} GiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${n} MiB`;
}

/** Ratio 0..1 (or part/whole) → "42%". Clamped to 0..100. */
export function percent(part: number | null | undefined, whole = 1): string {
  const r = ratio(part, whole);
  return r === null ? '—' : `${Math.round(r * 100)}%`;
}

/** part/whole clamped to 0..1, null when unknown. */
export function ratio(part: number | null | undefined, whole = 1): number | null {
  if (part === null || part === undefined || !isFinite(part) || !whole || !isFinite(whole)) return null;
  return Math.min(1, Math.max(0, part / whole));
}

/** Seconds → "3d 4h", "5m 2s". */
export function duration(sec: number | null | undefined): string {
  if (sec === null || sec === undefined || !isFinite(sec) || sec < 0) return '—';
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** Timestamps arrive as unix seconds, milliseconds or RFC 3339 strings. */
export function toDate(t: number | string | null | undefined): Date | null {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return new Date(t < 1e12 ? t * 1000 : t);
  if (/^\d+$/.test(t)) return toDate(Number(t));
  const d = new Date(t);
  return isNaN(d.getTime()) ? null : d;
}

/** "5 min ago", "in 2 h", "just now". */
export function relTime(t: number | string | null | undefined, now: number = Date.now()): string {
  const d = toDate(t);
  if (!d) return '—';
  const diff = Math.round((d.getTime() - now) / 1000);
  const a = Math.abs(diff);
  if (a < 10) return 'just now';
  const [v, u] = a < 60 ? [a, 's'] : a < 3600 ? [Math.floor(a / 60), 'min'] : a < 86400 ? [Math.floor(a / 3600), 'h'] : [Math.floor(a / 86400), 'd'];
  return diff < 0 ? `${v} ${u} ago` : `in ${v} ${u}`;
}

/** Local "2026-11-22 04:47". */
export function dateTime(t: number | string | null | undefined): string {
  const d = toDate(t);
  if (!d) return '—';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export type Tone = 'ok' | 'warn' | 'bad' | 'busy' | 'idle';

/** Colour family of an app or job status. */
export function statusTone(s: string | null | undefined): Tone {
  switch ((s ?? '').toLowerCase()) {
    case 'running':
    case 'succeeded':
    case 'success':
    case 'done':
    case 'ok':
    case 'online':
    case 'active':
    case 'bound':
    case 'available':
      return 'ok';
    case 'stopped':
    case 'cancelled':
    case 'expired':
    case 'offline':
      return 'idle';
    case 'error':
    case 'failed':
    case 'missing':
    case 'down':
    case 'failure':
    case 'denied':
      return 'bad';
    case 'degraded':
    case 'warning':
      return 'warn';
    default:
      return 'busy';
  }
}

/** "backing_up" → "Backing up". */
export function humanize(s: string | null | undefined): string {
  if (!s) return '';
  const t = s.replace(/[_.-]+/g, ' ').trim();
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** Is this status one that will change by itself soon (worth polling)? */
export function isTransient(s: string | null | undefined): boolean {
  return statusTone(s) === 'busy';
}
