import { describe, expect, it } from 'vitest';
import { bytes, dateTime, duration, humanize, isTransient, mib, percent, ratio, relTime, statusTone, toDate } from './format';

describe('formatters', () => {
  it('bytes', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(bytes(undefined)).toBe('—');
  });
  it('mib', () => {
    expect(mib(512)).toBe('512 MiB');
    expect(mib(2048)).toBe('2 GiB');
    expect(mib(1536)).toBe('1.5 GiB');
  });
  it('percent and ratio clamp', () => {
    expect(percent(0.423)).toBe('42%');
    expect(percent(5, 4)).toBe('100%');
    expect(percent(1, 0)).toBe('—');
    expect(ratio(-1)).toBe(0);
  });
  it('duration', () => {
    expect(duration(5)).toBe('5s');
    expect(duration(125)).toBe('2m 5s');
    expect(duration(3 * 86400 + 4 * 3600)).toBe('3d 4h');
    expect(duration(-1)).toBe('—');
  });
  it('dates from seconds, millis and strings', () => {
    expect(toDate(1_700_000_000)?.getTime()).toBe(1_700_000_000_000);
    expect(toDate(1_700_000_000_000)?.getTime()).toBe(1_700_000_000_000);
    expect(toDate('2026-01-01T00:00:00Z')?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(toDate('nonsense')).toBeNull();
    expect(dateTime(null)).toBe('—');
  });
  it('relative time', () => {
    const now = 1_700_000_000_000;
    expect(relTime(now / 1000 - 300, now)).toBe('5 min ago');
    expect(relTime(now / 1000 + 7200, now)).toBe('in 2 h');
    expect(relTime(now / 1000, now)).toBe('just now');
  });
  it('status tones', () => {
    expect(statusTone('running')).toBe('ok');
    expect(statusTone('error')).toBe('bad');
    expect(statusTone('stopped')).toBe('idle');
    expect(statusTone('deploying')).toBe('busy');
    expect(isTransient('backing_up')).toBe(true);
    expect(isTransient('running')).toBe(false);
    expect(humanize('backing_up')).toBe('Backing up');
  });
});
