// Shared by the browser tests: the Chromium flags, small checks, a free
// port, the static lint of web/, starting `caresync serve` on a temporary
// data directory, and the page watch that fails a test on console errors,
// page errors, CSP violations, failed requests and unexpected 4xx/5xx.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The start every browser test shares: its arguments (binary, web dir,
// artifact dir), and skip (exit 77) when chromium, playwright-core or any of
// needs ([[path, what]…]) is missing. Returns { BIN, WEB_DIR, ARTIFACTS, chromium }.
export async function browserTest(name, needs = []) {
  if (process.argv.length < 5) {
    console.error(`usage: node tests/browser/${name}.mjs <caresync-binary> <web-dir> <artifact-dir>`);
    process.exit(2);
  }
  for (const [path, what] of [[CHROMIUM, 'chromium'], ...needs]) {
    if (!existsSync(path)) {
      console.log(`SKIP: ${what} not found (${path})`);
      process.exit(77);
    }
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    console.log(`SKIP: playwright-core is not installed (run npm install in the repository): ${err.code || err.message}`);
    process.exit(77);
  }
  return { BIN: resolve(process.argv[2]), WEB_DIR: resolve(process.argv[3]), ARTIFACTS: resolve(process.argv[4]), chromium };
}

export function log(msg) {
  console.log(`[browser] ${msg}`);
}

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

export function checkEqual(got, want, msg) {
  if (got !== want) throw new Error(`check failed: ${msg}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
}

export function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

// A staff account made with the CLI (`caresync admin create-user`), its
// passphrase read from stdin as an operator would type it.
export function createUser(bin, dataDir, username, role, passphrase) {
  const r = spawnSync(bin, ['admin', 'create-user', '--data-dir', dataDir, '--username', username, '--role', role],
    { input: `${passphrase}\n`, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`admin create-user ${role} failed (${r.status}): ${r.stderr}${r.stdout}`);
}

// One API call from the page (its cookie, its CSRF token): {status, json, text}.
export function pageCall(page, method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    const headers = { Accept: 'application/json' };
    if (m !== 'GET') {
      headers['Content-Type'] = 'application/json';
      const s = await fetch('/api/session');
      if (s.ok) headers['X-CSRF-Token'] = (await s.json()).csrf_token;
    }
    const r = await fetch(p, { method: m, headers, body: b === undefined ? undefined : JSON.stringify(b) });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, json, text };
  }, [method, path, body]);
}

// pageCall that must answer `want`; its JSON.
export async function pageOk(page, method, path, body, want = 200) {
  const r = await pageCall(page, method, path, body);
  check(r.status === want, `${method} ${path}: expected ${want}, got ${r.status} ${r.text}`);
  return r.json;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// page.waitForFunction polls on requestAnimationFrame by default, and a page
// of a loaded machine (CTest runs the browser tests beside the fuzzers) can
// have its animation frames starved past the timeout while the page itself is
// fine: browser_surveillance_flow timed out that way in CI with the predicate
// already true. Every wait in these tests polls on a timer instead
// (scripts/style-check.sh refuses a bare waitForFunction under tests/browser).
export function waitUntil(page, fn, arg, options = {}) {
  return page.waitForFunction(fn, arg, { polling: 100, ...options });
}

// Static check of the web directory: the pages must work under the CSP
// (module scripts only, no inline script/style/handlers, no HTML injection).
export function lintWebDir(dir, mustHave) {
  const problems = [];
  const html = readdirSync(dir).filter((f) => f.endsWith('.html'));
  for (const want of mustHave) check(html.includes(want), `${dir} has no ${want}`);
  for (const f of html) {
    const text = readFileSync(join(dir, f), 'utf8');
    for (const m of text.matchAll(/<script\b([^>]*)>/gi)) {
      if (!/\bsrc\s*=/.test(m[1])) problems.push(`${f}: inline <script>`);
      else if (!/type\s*=\s*"module"/.test(m[1])) problems.push(`${f}: <script> without type="module"`);
    }
    if (/<style\b/i.test(text)) problems.push(`${f}: <style> element`);
    if (/\sstyle\s*=/i.test(text)) problems.push(`${f}: style= attribute`);
    if (/\son[a-z]+\s*=/i.test(text)) problems.push(`${f}: on*= event handler attribute`);
    if (/javascript:/i.test(text)) problems.push(`${f}: javascript: URL`);
    // One layout (js/layout.js): a page holds its own content, the empty
    // header placeholder and one module script that imports the layout;
    // no copy of the header, navigation, skip link or common footer.
    const scripts = [...text.matchAll(/<script\b[^>]*\bsrc\s*=\s*"\/js\/([\w-]+\.js)"/gi)].map((m) => m[1]);
    if (scripts.length !== 1 || (text.match(/<script\b/gi) || []).length !== 1) problems.push(`${f}: not exactly one page script`);
    else if (!/from '\.\/layout\.js'/.test(readFileSync(join(dir, 'js', scripts[0]), 'utf8'))) {
      problems.push(`${f}: js/${scripts[0]} does not import ./layout.js`);
    }
    if ((text.match(/<header class="site-header" id="site-header"><\/header>/g) || []).length !== 1) {
      problems.push(`${f}: no empty <header class="site-header" id="site-header"> placeholder`);
    }
    if (/site-header-inner|class="brand"|site-nav|skip-link|it is encrypted with a key only your password/.test(text)) {
      problems.push(`${f}: repeats the layout (header, navigation, skip link or footer) that js/layout.js renders`);
    }
  }
  const jsDir = join(dir, 'js');
  for (const f of readdirSync(jsDir).filter((n) => n.endsWith('.js'))) {
    const text = readFileSync(join(jsDir, f), 'utf8');
    if (/\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write/.test(text)) problems.push(`js/${f}: HTML injection API`);
    if (/\beval\s*\(|new Function\s*\(/.test(text)) problems.push(`js/${f}: eval`);
    // ISO weeks are the server's (src/surveil/week.c, GET /api/surveil/weeks).
    if (/getUTCDay|getDay\(\)|Date\.UTC\(/.test(text)) problems.push(`js/${f}: calendar arithmetic (ask the server)`);
  }
  if (problems.length) throw new Error(`web UI lint:\n  ${problems.join('\n  ')}`);
}

// ---------------------------------------------------------------- server

// args: extra `serve` options; env: extra environment (e.g. libfaketime to
// run the server hours later); logName: the log's file name in artifacts
// (a test that restarts the server keeps each run's log).
export async function startServer(dataDir, { bin, webDir, artifacts, args: extra = [], env = {}, logName = 'server.log' }) {
  const logPath = join(artifacts, logName);
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const args = ['serve', '--port', String(port), '--data-dir', dataDir, '--web-dir', webDir, ...extra];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    proc.stdout.on('data', (d) => { output += d; });
    proc.stderr.on('data', (d) => { output += d; });
    const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    let gone = null;
    exited.then((e) => { gone = e; });
    proc.on('error', (e) => { gone = { code: -1, signal: null, error: e }; });
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !gone) {
      try {
        const res = await fetch(`${base}/api/health`);
        if (res.ok) {
          const health = await res.json();
          check(health.status === 'ok', `health status: ${JSON.stringify(health)}`);
          check(health.ledger?.ok, `ledger health: ${JSON.stringify(health.ledger)}`);
          log(`server up at ${base} (version ${health.version}, ledger height ${health.ledger?.height})`);
          return {
            base, proc, exited,
            get output() { return output; },
            async stop() {
              if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill('SIGTERM');
                const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
                await exited;
                clearTimeout(t);
              }
              writeFileSync(logPath, output);
              const bad = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/.exec(output);
              if (bad) throw new Error(`sanitizer report in the server output (see ${logPath}):\n${output.slice(bad.index, bad.index + 2000)}`);
            },
          };
        }
      } catch { /* not listening yet */ }
      await sleep(100);
    }
    writeFileSync(logPath, output);
    if (gone && /address already in use|EADDRINUSE|bind/i.test(output) && attempt < 3) {
      log(`port ${port} was taken, retrying`);
      continue;
    }
    if (!gone) proc.kill('SIGKILL');
    throw new Error(`server did not answer /api/health (${gone ? `exited ${JSON.stringify(gone)}` : 'timeout'}):\n${output}`);
  }
  throw new Error('could not start the server');
}

// ---------------------------------------------------------------- page watch

// Console errors, page errors, CSP violations and bad responses fail the
// test; an API error a step provokes on purpose is declared first with
// allowHttpError(status, path) (Chromium logs it as "Failed to load resource").
export class Watch {
  constructor() {
    this.problems = [];
    this.allowed = [];
    this.seen = [];
  }

  allowHttpError(status, path) {
    const entry = { status, path };
    this.allowed.push(entry);
    return () => { this.allowed = this.allowed.filter((e) => e !== entry); };
  }

  async attach(context) {
    await context.exposeBinding('__cspViolation', (_src, v) => {
      this.problems.push(`CSP violation: ${v.directive} blocked ${v.blocked} at ${v.source}:${v.line}`);
    });
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__cspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber });
      });
    });
  }

  page(page, label) {
    page.on('console', (msg) => {
      if (msg.type() !== 'error' && msg.type() !== 'assert') return;
      const text = msg.text();
      const url = msg.location()?.url || '';
      const m = /Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      if (m) {
        let path = '';
        try { path = new URL(url).pathname; } catch { /* no url */ }
        if (this.allowed.some((a) => a.status === Number(m[1]) && a.path === path)) {
          this.seen.push(`expected: ${m[1]} ${path}`);
          return;
        }
      }
      this.problems.push(`[${label}] console.${msg.type()}: ${text}${url ? ` (${url})` : ''}`);
    });
    page.on('pageerror', (err) => this.problems.push(`[${label}] page error: ${err.stack || err.message}`));
    page.on('dialog', (d) => {
      this.problems.push(`[${label}] unexpected ${d.type()} dialog: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    page.on('requestfailed', (req) => {
      const why = req.failure()?.errorText || '';
      // Navigating away (or a link turning into a download) aborts requests; not a UI failure.
      if (!/ERR_ABORTED/.test(why)) this.problems.push(`[${label}] request failed: ${req.method()} ${req.url()} ${why}`);
    });
    page.on('response', (res) => {
      const path = new URL(res.url()).pathname;
      if (res.status() >= 500) this.problems.push(`[${label}] ${res.status()} from ${res.request().method()} ${path}`);
      else if (res.status() >= 400 && !path.startsWith('/api/')) this.problems.push(`[${label}] ${res.status()} for static ${path}`);
      else if (res.status() >= 400 && !this.allowed.some((a) => a.status === res.status() && a.path === path)) {
        this.problems.push(`[${label}] unexpected ${res.status()} from ${res.request().method()} ${path}`);
      }
    });
  }

  assertClean(step) {
    if (this.problems.length) {
      const list = this.problems.splice(0);
      throw new Error(`browser problems by step "${step}":\n  ${list.join('\n  ')}`);
    }
  }
}
