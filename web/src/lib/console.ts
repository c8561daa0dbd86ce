// Web console protocol (issue 14), client side:
//   GET /api/v1/apps/{id}/console?cols=C&rows=R&csrf=T  upgraded to a WebSocket (session cookie auth;
//   `csrf` repeats the proximity_csrf cookie because browsers cannot set headers on WebSockets).
//   client → server: binary frames = keyboard input bytes;
//                    text frames = JSON control {"type":"resize","cols":C,"rows":R}
//   server → client: binary frames = terminal output bytes;
//                    text frames = JSON {"type":"exit","reason":...} | {"type":"error","message":...}
//   The close frame's reason says why the session ended (idle timeout, app deleted, ...).

/** WebSocket URL of an app's console for the current page origin. */
export function consoleUrl(loc: { protocol: string; host: string }, appId: string, cols: number, rows: number, csrf: string | null): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams({ cols: String(cols), rows: String(rows) });
  if (csrf) q.set('csrf', csrf);
  return `${scheme}//${loc.host}/api/v1/apps/${encodeURIComponent(appId)}/console?${q}`;
}

export const resizeMsg = (cols: number, rows: number) => JSON.stringify({ type: 'resize', cols, rows });

export type Control = { type: 'exit'; reason: string } | { type: 'error'; message: string } | { type: 'other'; raw: string };

/** Parse a server text frame. Unknown text is passed through as output. */
export function parseControl(text: string): Control {
  try {
    const o = JSON.parse(text);
    if (o && o.type === 'exit') return { type: 'exit', reason: String(o.reason ?? o.message ?? 'the session ended') };
    if (o && o.type === 'error') return { type: 'error', message: String(o.message ?? o.detail ?? 'error') };
  } catch {
    /* not JSON */
  }
  return { type: 'other', raw: text };
}

/** Human reason for a WebSocket close. */
export function closeReason(code: number, reason: string, opened: boolean): string {
  if (reason) return reason;
  if (!opened) return code === 1006 ? 'The console is not available (no connection could be made — the appliance may not support consoles yet, or you lack access).' : `Connection refused (code ${code}).`;
  switch (code) {
    case 1000:
      return 'The session ended.';
    case 1001:
      return 'The appliance is going away (restart).';
    case 1008:
      return 'Not allowed.';
    case 1011:
      return 'The appliance hit an error.';
    case 1013:
      return 'Too many consoles open; try again later.';
    default:
      return `The connection was lost (code ${code}).`;
  }
}
