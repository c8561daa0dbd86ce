import { describe, expect, it } from 'vitest';
import { closeReason, consoleUrl, parseControl, resizeMsg } from './console';

describe('console protocol', () => {
  it('builds ws/wss URLs with size and csrf', () => {
    expect(consoleUrl({ protocol: 'https:', host: 'h:9443' }, 'app-1', 80, 24, 'tok')).toBe('wss://h:9443/api/v1/apps/app-1/console?cols=80&rows=24&csrf=tok');
    expect(consoleUrl({ protocol: 'http:', host: 'h' }, 'a b', 10, 5, null)).toBe('ws://h/api/v1/apps/a%20b/console?cols=10&rows=5');
  });
  it('parses control frames', () => {
    expect(parseControl('{"type":"exit","reason":"idle timeout"}')).toEqual({ type: 'exit', reason: 'idle timeout' });
    expect(parseControl('{"type":"error","message":"no"}')).toEqual({ type: 'error', message: 'no' });
    expect(parseControl('plain')).toEqual({ type: 'other', raw: 'plain' });
    expect(JSON.parse(resizeMsg(100, 30))).toEqual({ type: 'resize', cols: 100, rows: 30 });
  });
  it('explains closes', () => {
    expect(closeReason(1000, '', true)).toMatch(/ended/);
    expect(closeReason(1006, '', false)).toMatch(/not available/);
    expect(closeReason(4000, 'app deleted', true)).toBe('app deleted');
    expect(closeReason(1013, '', true)).toMatch(/Too many/);
  });
});
