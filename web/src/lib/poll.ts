// Repeat a loader while the page is visible; returns a stop function.
export function every(ms: number, f: () => unknown | Promise<unknown>): () => void {
  let stopped = false;
  let t: ReturnType<typeof setTimeout> | null = null;
  const run = async () => {
    if (stopped) return;
    if (typeof document === 'undefined' || document.visibilityState !== 'hidden') {
      try {
        await f();
      } catch {
        /* the loader shows its own error */
      }
    }
    if (!stopped) t = setTimeout(run, ms);
  };
  t = setTimeout(run, ms);
  return () => {
    stopped = true;
    if (t) clearTimeout(t);
  };
}
