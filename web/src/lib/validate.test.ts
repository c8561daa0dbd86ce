import { describe, expect, it } from 'vitest';
import { cronError, hostnameError, passwordError, resourceErrors, suggestHostname, usernameError } from './validate';

describe('hostname (RFC 1123 label)', () => {
  it('accepts valid labels', () => {
    for (const h of ['a', 'nextcloud', 'my-app-2', '0day', 'a'.repeat(63)]) expect(hostnameError(h)).toBeNull();
  });
  it('rejects invalid labels with a reason', () => {
    expect(hostnameError('')).toMatch(/Enter/);
    expect(hostnameError('a'.repeat(64))).toMatch(/63/);
    expect(hostnameError('MyApp')).toMatch(/lowercase/);
    expect(hostnameError('my_app')).toMatch(/"_"/);
    expect(hostnameError('my app')).toMatch(/space/);
    expect(hostnameError('-app')).toMatch(/start or end/);
    expect(hostnameError('app-')).toMatch(/start or end/);
    expect(hostnameError('a.b')).toMatch(/"\."/);
  });
  it('suggests a valid name', () => {
    expect(suggestHostname('Home Assistant!')).toBe('home-assistant');
    expect(hostnameError(suggestHostname('--Uptime  Kuma__'))).toBeNull();
  });
});

describe('resources', () => {
  const min = { cores: 1, memory_mb: 512, disk_gb: 4 };
  it('accepts at or above minimum', () => {
    expect(resourceErrors({ cores: 1, memory_mb: 512, disk_gb: 4 }, min)).toEqual({});
  });
  it('names the minimum', () => {
    const e = resourceErrors({ cores: 0, memory_mb: 256, disk_gb: 4.5 }, min);
    expect(e.cores).toMatch(/at least 1/);
    expect(e.memory_mb).toMatch(/512 MiB/);
    expect(e.disk_gb).toMatch(/whole number/);
  });
});

describe('other validators', () => {
  it('password, username, cron', () => {
    expect(passwordError('short')).toMatch(/8/);
    expect(passwordError('longenough')).toBeNull();
    expect(usernameError('bob smith')).toMatch(/only/);
    expect(usernameError('Bob')).toMatch(/Start/);
    expect(usernameError('_bob')).toMatch(/Start/);
    expect(usernameError('bob.smith')).toBeNull();
    expect(cronError('0 3 * * *')).toBeNull();
    expect(cronError('0 3 * *')).toMatch(/5 fields/);
  });
});
