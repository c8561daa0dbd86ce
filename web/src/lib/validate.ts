// Client-side validation mirroring the server's rules (src/validate); the server stays the
// authority and its problem+json field errors are shown in the same place.

/** RFC 1123 label used as app hostname: 1–63 chars, a–z 0–9 and '-', no leading/trailing '-'. */
export function hostnameError(h: string): string | null {
  if (!h) return 'Enter a hostname.';
  if (h.length > 63) return `At most 63 characters (${h.length} now).`;
  if (/[A-Z]/.test(h)) return 'Use lowercase letters.';
  if (/[^a-z0-9-]/.test(h)) {
    const bad = h.match(/[^a-z0-9-]/)![0];
    return `"${bad === ' ' ? 'space' : bad}" is not allowed: use a–z, 0–9 and "-".`;
  }
  if (h.startsWith('-') || h.endsWith('-')) return 'Cannot start or end with "-".';
  return null;
}

/** Turn free text into a likely-valid hostname suggestion. */
export function suggestHostname(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 63)
    .replace(/-$/, '');
}

export interface Resources {
  cores: number;
  memory_mb: number;
  disk_gb: number;
}

/** Per-field errors for requested resources against catalog minimums. */
export function resourceErrors(r: Partial<Resources>, min: Partial<Resources>): Partial<Record<keyof Resources, string>> {
  const out: Partial<Record<keyof Resources, string>> = {};
  const check = (k: keyof Resources, label: string, unit: string, max: number) => {
    const v = r[k];
    if (v === undefined || v === null || !Number.isFinite(v) || !Number.isInteger(v)) {
      out[k] = `Enter a whole number of ${label}.`;
      return;
    }
    const m = min[k] ?? 1;
    if (v < m) out[k] = `This app needs at least ${m}${unit}.`;
    else if (v > max) out[k] = `At most ${max}${unit}.`;
  };
  check('cores', 'cores', ' cores', 128);
  check('memory_mb', 'MiB', ' MiB', 1024 * 1024);
  check('disk_gb', 'GiB', ' GiB', 65536);
  return out;
}

/** Password policy for setup/user creation (server may be stricter). */
export function passwordError(p: string): string | null {
  if (!p) return 'Enter a password.';
  if ([...p].length < 8) return 'At least 8 characters.';
  if ([...p].length > 256) return 'At most 256 characters.';
  return null;
}

/** Usernames (as the server): 1–32 of a–z 0–9 . _ -, starting with a letter or digit. */
export function usernameError(u: string): string | null {
  if (!u) return 'Enter a username.';
  if (u.length > 32) return 'At most 32 characters.';
  if (!/^[a-z0-9]/.test(u)) return 'Start with a lowercase letter or digit.';
  if (!/^[a-z0-9._-]+$/.test(u)) return 'Lowercase letters, digits, ".", "_" and "-" only.';
  return null;
}

/** Five-field cron expression shape check (like src/validate cron_shape). */
export function cronError(c: string): string | null {
  const f = c.trim().split(/\s+/);
  if (f.length !== 5) return 'Use 5 fields: minute hour day month weekday.';
  if (!f.every((x) => /^[\d*/,\-A-Za-z]+$/.test(x))) return 'Only digits, *, /, "," and "-".';
  return null;
}
