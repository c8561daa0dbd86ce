// Browser end-to-end test: playwright-core driving Debian's Chromium (never downloads a browser).
//
//   PROXIMITY_BIN=../target/debug/proximity npm run e2e   # against `proximity demo` (ephemeral ports)
//   E2E_MOCK=1 npm run e2e                                # against e2e/mock-server.mjs (development)
//
// Env: PROXIMITY_BIN (binary path), E2E_MOCK=1, E2E_APP (catalog id to deploy; default: the
// first card), CHROMIUM (default /usr/bin/chromium), E2E_SHOTS (default ../target/ui-screenshots),
// E2E_TIMEOUT_S (deploy timeout, default 240).
// Flow: first-run/login → deploy from the catalog → progress to running → app page → stop/start
// → backup → every tab → admin pages → a plain user cannot see admin pages or others' apps →
// delete. A screenshot of every page goes to E2E_SHOTS. Fails on any console error.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const here = new URL('.', import.meta.url).pathname;
const SHOTS = resolve(process.env.E2E_SHOTS ?? join(here, '../../target/ui-screenshots'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const DEPLOY_TIMEOUT = Number(process.env.E2E_TIMEOUT_S ?? 240) * 1000;
const ADMIN_PW = `e2e-admin-${process.pid}`;
const USER_PW = `e2e-user-${process.pid}`;
const HOST = `e2e-${process.pid}`;
const children = [];
const tmp = mkdtempSync(join(tmpdir(), 'proximity-e2e-'));

function cleanup() {
  for (const c of children) if (c.exitCode === null) try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ }
  rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const freePort = () =>
  new Promise((ok, no) => {
    const s = createServer();
    s.on('error', no);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => ok(p));
    });
  });

/** Start a process and resolve with its output once a line starts with `ready`. */
function startUntilReady(cmd, argv, timeoutMs) {
  return new Promise((ok, no) => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    let out = '';
    const t = setTimeout(() => no(new Error(`${cmd} not ready after ${timeoutMs} ms:\n${out.slice(-3000)}`)), timeoutMs);
    const on = (d) => {
      out += d;
      if (/^ready/m.test(out)) {
        clearTimeout(t);
        ok(out);
      }
    };
    c.stdout.on('data', on);
    c.stderr.on('data', on);
    c.on('exit', (code) => {
      clearTimeout(t);
      no(new Error(`${cmd} exited with ${code} before ready:\n${out.slice(-3000)}`));
    });
  });
}

async function startBackend() {
  if (process.env.PROXIMITY_BIN && !process.env.E2E_MOCK) {
    const bin = resolve(process.env.PROXIMITY_BIN);
    if (!existsSync(bin)) throw new Error(`PROXIMITY_BIN ${bin} does not exist`);
    const [api, dns, http, https, sim, simSsh] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
    const argv = ['demo', '--data-dir', join(tmp, 'data'), '--admin-password', ADMIN_PW, '--api-listen', `127.0.0.1:${api}`, '--dns-listen', `127.0.0.1:${dns}`,
      '--http-listen', `127.0.0.1:${http}`, '--https-listen', `127.0.0.1:${https}`, '--sim-listen', `127.0.0.1:${sim}`, '--sim-ssh-listen', `127.0.0.1:${simSsh}`];
    console.log(`starting ${bin} ${argv.join(' ')}`);
    const out = await startUntilReady(bin, argv, 120_000);
    // DESIGN §10: the UI is https; follow what the demo prints if it says otherwise.
    const scheme = new RegExp(`(https?)://127\\.0\\.0\\.1:${api}`).exec(out)?.[1] ?? 'https';
    return { base: `${scheme}://127.0.0.1:${api}`, kind: 'demo' };
  }
  const port = await freePort();
  await startUntilReady(process.execPath, [join(here, 'mock-server.mjs'), '--listen', `127.0.0.1:${port}`, '--fresh'], 20_000);
  return { base: `http://127.0.0.1:${port}`, kind: 'mock' };
}

const results = [];
let failed = 0;
let appReady = false;
/** Run one step; a failure is recorded and later steps still run (those needing the app are skipped). */
async function step(name, f, { needsApp = false, onFail } = {}) {
  const t = Date.now();
  if (needsApp && !appReady) {
    results.push(['SKIP', name, 0]);
    console.log(`  SKIP ${name} (no deployed app)`);
    return;
  }
  try {
    await f();
    results.push(['ok', name, Date.now() - t]);
    console.log(`  ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    failed++;
    results.push(['FAIL', name, Date.now() - t]);
    console.log(`  FAIL ${name}: ${e.message.split('\n')[0]}`);
    await onFail?.(e);
  }
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (this test never downloads a browser)`);
  const { base, kind } = await startBackend();
  console.log(`backend (${kind}) at ${base}; screenshots in ${SHOTS}`);
  const ctx = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const consoleErrors = [];
  let expectErrors = false; // set while a step provokes errors on purpose (wrong password)
  const watch = (page) => {
    page.on('console', (m) => m.type() === 'error' && !expectErrors && consoleErrors.push(`${page.url()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: pageerror ${e.message}`));
  };
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  watch(page);
  page.setDefaultTimeout(20_000);
  const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const h1 = (text) => page.getByRole('heading', { level: 1, name: text }).waitFor();
  const go = async (path) => {
    await page.goto(base + path);
  };
  async function login(user, pw) {
    await go('/login');
    await page.locator('input[name=username]').fill(user);
    await page.locator('input[name=password]').fill(pw);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await h1('Dashboard');
  }
  async function signOut() {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  }

  let appId = '';
  try {
    await step('first run or login', async () => {
      await go('/');
      const first = page.getByRole('heading', { name: 'Create the administrator' });
      const signIn = page.getByRole('heading', { name: 'Sign in' });
      await first.or(signIn).waitFor();
      if (await first.isVisible()) {
        await shot('01-setup');
        await page.locator('input[name=username]').fill('admin');
        await page.locator('input[name=password]').fill('short');
        await page.locator('input[name=password2]').fill('short');
        await page.getByRole('button', { name: 'Create account' }).click();
        await page.getByText('At least 8 characters.').first().waitFor();
        await page.locator('input[name=password]').fill(ADMIN_PW);
        await page.locator('input[name=password2]').fill(ADMIN_PW);
        await page.getByRole('button', { name: 'Create account' }).click();
        await h1('Catalog');
        await signOut();
      }
      await shot('02-login');
      expectErrors = true;
      await page.locator('input[name=username]').fill('admin');
      await page.locator('input[name=password]').fill('wrong-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('login-error').waitFor();
      expectErrors = false;
      await page.locator('input[name=password]').fill(ADMIN_PW);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await h1('Dashboard');
      await shot('03-dashboard');
    });

    let catalogId = process.env.E2E_APP ?? '';
    await step('catalog search and categories', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Catalog' }).click();
      await h1('Catalog');
      await page.getByTestId('catalog-card').first().waitFor();
      await shot('04-catalog');
      if (!catalogId) catalogId = await page.getByTestId('catalog-card').first().getAttribute('data-id');
      await page.getByTestId('catalog-search').fill('zzzz-no-such-app');
      await page.getByRole('heading', { name: 'No app matches' }).waitFor();
      await page.getByTestId('catalog-search').fill('');
    });

    await step(`deploy ${catalogId} as ${HOST} with live progress`, async () => {
      await page.locator(`[data-testid=catalog-card][data-id="${catalogId}"]`).click();
      await page.getByTestId('deploy-form').waitFor();
      const host = page.locator('input[name=hostname]');
      await host.fill('Bad_Name');
      await page.getByTestId('hostname-error').waitFor();
      await host.fill('-bad');
      await page.getByTestId('hostname-error').getByText('Cannot start or end').waitFor();
      await host.fill(HOST);
      await page.getByTestId('hostname-error').waitFor({ state: 'detached' });
      await shot('05-deploy-form');
      await page.getByTestId('deploy-submit').click();
      await page.getByTestId('job-progress').waitFor();
      await page.locator('[data-testid=job-progress] [data-state=running], [data-testid=job-progress] [data-state=done]').first().waitFor({ timeout: 60_000 }).catch(() => {});
      await shot('06-deploy-progress');
      await page.getByTestId('deploy-done').waitFor({ timeout: DEPLOY_TIMEOUT });
      const link = await page.getByTestId('open-link').getAttribute('href');
      if (!link?.startsWith(`https://${HOST}.`)) throw new Error(`final link is ${link}`);
      await shot('07-deploy-done');
      appReady = true;
    }, { onFail: async () => { await shot('zz-deploy-failure').catch(() => {}); } });

    await step('app page shows running', async () => {
      await page.getByTestId('app-page-link').click();
      await page.getByRole('heading', { level: 1, name: HOST }).waitFor();
      appId = page.url().split('/apps/')[1].split(/[?#]/)[0];
      await page.locator('h1 [data-status=running]').waitFor({ timeout: 60_000 });
      await shot('08-app-overview');
    }, { needsApp: true });

    const statusIs = (s, timeout = 120_000) => page.locator(`h1 [data-status=${s}]`).waitFor({ timeout });
    await step('stop and start', async () => {
      await page.getByTestId('action-stop').click();
      await page.getByTestId('confirm-ok').click();
      await statusIs('stopped');
      await page.getByTestId('action-start').click();
      await statusIs('running');
    }, { needsApp: true });

    await step('create a backup', async () => {
      await page.getByRole('tab', { name: 'Backups' }).click();
      await page.getByTestId('backup-create').click();
      await page.getByTestId('backup-row').first().waitFor();
      await page.getByTestId('job-progress').waitFor({ state: 'detached', timeout: 180_000 });
      await statusIs('running');
      await page.getByRole('tab', { name: 'Backups' }).click();
      await page.locator('[data-testid=backup-row]:not([data-status=creating])').first().waitFor({ timeout: 30_000 });
      await shot('09-app-backups');
    }, { needsApp: true });

    await step('app tabs: open, logs, metrics, commands, console', async () => {
      await page.getByRole('tab', { name: 'Open' }).click();
      await page.getByTestId('open-new-tab').waitFor();
      await shot('10-app-open');
      await page.getByRole('tab', { name: 'Logs' }).click();
      await page.getByTestId('app-logs').waitFor();
      await shot('11-app-logs');
      await page.getByRole('tab', { name: 'Metrics' }).click();
      await page.getByRole('heading', { name: 'Metrics' }).waitFor();
      await shot('12-app-metrics');
      await page.getByRole('tab', { name: 'Commands' }).click();
      await page.locator('[data-command=uptime]').click();
      await page.getByTestId('command-output').or(page.locator('.banner.bad')).first().waitFor();
      await shot('13-app-commands');
      await page.getByRole('tab', { name: 'Console' }).click();
      await page.getByTestId('console-connect').click();
      await page.locator('[data-testid=console] .chip.ok').waitFor({ timeout: 20_000 });
      await page.locator('[data-testid=console] .xterm').click();
      await page.keyboard.type('echo ok');
      await page.keyboard.press('Enter');
      // xterm renders rows as text in .xterm-rows; the echoed line `ok` must appear alone.
      await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=console] .xterm-rows > div')].some((r) => r.textContent.trim() === 'ok'), null, { timeout: 20_000 });
      await shot('14-app-console');
    }, { needsApp: true });

    await step('admin pages', async () => {
      for (const [link, title, name] of [['Apps', 'Apps', '15-apps'], ['Network', 'Network', '16-network'], ['Settings', 'Settings', '17-settings'], ['Users', 'Users', '18-users'], ['Audit log', 'Audit log', '19-audit']]) {
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: link }).click();
        await h1(title);
        await page.waitForLoadState('networkidle').catch(() => {});
        await shot(name);
      }
      await go('/settings');
      await h1('Settings');
      const keep = page.getByRole('textbox', { name: 'Backups to keep per app' });
      if (await keep.count()) {
        await keep.fill('not-a-number');
        await keep.locator('xpath=ancestor::form').getByRole('button', { name: 'Save' }).click();
        await page.getByText('Enter a number.').waitFor();
        await keep.fill('8');
        await keep.locator('xpath=ancestor::form').getByRole('button', { name: 'Save' }).click();
        await page.getByText('Schedule settings saved.').waitFor();
      }
      const test = page.getByTestId('host-row').first().getByRole('button', { name: 'Test' });
      if (await test.count()) {
        await test.click();
        await page.getByTestId('host-row').first().getByRole('status').waitFor({ timeout: 30_000 });
        await shot('17b-settings-host-test');
      }
      await go('/account');
      await h1('Account');
      await shot('20-account');
    });

    await step('create a plain user', async () => {
      await go('/users');
      await page.getByTestId('user-add').click();
      await page.locator('#user-form input[name=username]').fill('e2euser');
      await page.locator('#user-form input[name=password]').fill(USER_PW);
      await page.getByRole('button', { name: 'Create user' }).click();
      await page.locator('[data-testid=user-row][data-username=e2euser]').waitFor();
      await signOut();
    });

    await step('plain user: no admin pages, no foreign apps', async () => {
      await login('e2euser', USER_PW);
      const nav = page.getByRole('navigation', { name: 'Main' });
      for (const hidden of ['Network', 'Settings', 'Users', 'Audit log']) if (await nav.getByRole('link', { name: hidden }).count()) throw new Error(`${hidden} visible to a plain user`);
      await shot('21-user-dashboard');
      for (const p of ['/network', '/settings', '/users', '/audit']) {
        await go(p);
        await page.getByTestId('forbidden').waitFor();
      }
      await shot('22-user-forbidden');
      await go('/apps');
      await h1('Apps');
      await page.getByRole('heading', { name: 'No apps yet' }).waitFor();
      if (await page.locator(`[data-testid=app-row][data-hostname="${HOST}"]`).count()) throw new Error("admin's app visible to a plain user");
      expectErrors = true; // the API answers 404 for another user's app
      await go(`/apps/${appId || 'app-000000000000'}`);
      await page.getByRole('heading', { name: 'App not found' }).waitFor();
      expectErrors = false;
      await shot('23-user-foreign-app');
      await signOut();
    });

    await step('responsive and dark theme', async () => {
      await login('admin', ADMIN_PW);
      await page.setViewportSize({ width: 390, height: 844 });
      await go(appId ? `/apps/${appId}` : '/');
      await page.getByRole('heading', { level: 1 }).first().waitFor();
      await shot('24-mobile-app');
      await page.getByRole('button', { name: 'Menu' }).click();
      await shot('25-mobile-menu');
      await page.setViewportSize({ width: 1280, height: 860 });
      await go('/');
      await h1('Dashboard');
      for (let i = 0; i < 3 && (await page.evaluate(() => document.documentElement.dataset.theme)) !== 'dark'; i++) await page.getByRole('button', { name: /Switch theme/ }).click();
      await shot('26-dashboard-dark');
    });

    await step('delete the app', async () => {
      await go(`/apps/${appId}`);
      await page.getByTestId('action-delete').click();
      await page.getByTestId('confirm-input').fill(HOST);
      await page.getByTestId('confirm-ok').click();
      await page.waitForURL(/\/apps$/, { timeout: 180_000 });
      await page.waitForTimeout(1000);
      await page.reload();
      await h1('Apps');
      await page.waitForLoadState('networkidle').catch(() => {});
      if (await page.locator(`[data-testid=app-row][data-hostname="${HOST}"]`).count()) throw new Error('app still listed after delete');
      await shot('27-apps-after-delete');
    }, { needsApp: true });

    await step('no console errors', async () => {
      if (consoleErrors.length) throw new Error(`console errors:\n${consoleErrors.join('\n')}`);
    });
    if (failed) throw new Error(`${failed} step(s) failed`);
  } catch (e) {
    await shot('zz-failure').catch(() => {});
    console.error(e.stack ?? e);
    if (consoleErrors.length) console.error(`console errors:\n${consoleErrors.join('\n')}`);
    process.exitCode = 1;
  } finally {
    await ctx.close().catch(() => {});
  }
  console.log(`${results.filter((r) => r[0] === 'ok').length}/${results.length} steps passed against ${kind} (${results.filter((r) => r[0] === 'SKIP').length} skipped)`);
}

main()
  .catch((e) => {
    console.error(e.stack ?? e);
    process.exitCode = 1;
  })
  .finally(() => {
    // Stop the backend (by PID) and exit even if a child keeps pipes open.
    cleanup();
    setTimeout(() => process.exit(process.exitCode ?? 0), 500);
  });
