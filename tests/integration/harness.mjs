// Shared harness for HTTP integration tests: starts a real caresync server
// process on loopback with its own temporary data directory, and gives a
// small client that keeps the session cookie and CSRF token like a browser.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = process.env.CARESYNC_BIN || new URL('../../build/caresync', import.meta.url).pathname;
export const WEB_DIR = process.env.CARESYNC_WEB_DIR || new URL('../../web', import.meta.url).pathname;

// Start a server; extra args are appended to `caresync serve`. Resolves once
// it prints its listening line (port 0 lets the kernel pick a free port).
export async function startServer(extra = [], opts = {}) {
  const dataDir = opts.dataDir || mkdtempSync(join(tmpdir(), 'caresync-it-'));
  // Every client of a test server is 127.0.0.1, so one test file's sign-ups
  // all count against one address's limit (20 an hour by default). Tests get
  // a high one unless they pass their own --signups-per-window.
  const signups = extra.includes('--signups-per-window') ? [] : ['--signups-per-window', '100000'];
  const args = ['serve', '--port', '0', '--data-dir', dataDir, '--web-dir', WEB_DIR, '--log-level', 'warn', ...signups, ...extra];
  // opts.env: extra environment (e.g. libfaketime to run the server days later)
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const line = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start in 20 s: ' + stderr)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (https?):\/\/[^:]+:(\d+)\//);
      if (m) { clearTimeout(timer); resolve(m); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  const base = `${line[1]}://127.0.0.1:${line[2]}`;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    base, dataDir, proc, exited,
    get stderr() { return stderr; },
    // Graceful stop: SIGTERM, wait for exit; returns {code, signal}.
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    cleanup() { if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true }); },
  };
}

// A browser-like client: cookie jar of one cookie, CSRF header on writes.
export class Client {
  constructor(base) { this.base = base; this.cookie = null; this.csrf = null; }
  async req(method, path, body, { headers = {}, raw = false, csrf = true } = {}) {
    const h = { ...headers };
    if (this.cookie) h.Cookie = `cs_session=${this.cookie}`;
    if (csrf && this.csrf && method !== 'GET' && method !== 'HEAD') h['X-CSRF-Token'] = this.csrf;
    let payload;
    if (body !== undefined) {
      if (raw) payload = body;
      else { payload = JSON.stringify(body); h['Content-Type'] = h['Content-Type'] || 'application/json'; }
    }
    const res = await fetch(this.base + path, { method, headers: h, body: payload, redirect: 'manual' });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) {
      const m = setCookie.match(/cs_session=([^;]*)/);
      if (m) this.cookie = m[1] || null;
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    const text = bytes.toString('utf8');
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (json && json.csrf_token) this.csrf = json.csrf_token;
    return { status: res.status, headers: res.headers, json, text, bytes };
  }
  get(p, o) { return this.req('GET', p, undefined, o); }
  post(p, b, o) { return this.req('POST', p, b, o); }
  put(p, b, o) { return this.req('PUT', p, b, o); }
  del(p, b, o) { return this.req('DELETE', p, b, o); }
  async signup(username, password = 'correct horse battery') {
    const r = await this.post('/api/auth/signup', { username, password });
    if (r.status !== 201) throw new Error(`signup ${username}: ${r.status} ${r.text}`);
    return r;
  }
  async login(username, password = 'correct horse battery') {
    const r = await this.post('/api/auth/login', { username, password });
    if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${r.text}`);
    return r;
  }
}

// Create a staff account with the CLI (the only way staff accounts exist).
export async function createStaff(dataDir, username, role, password = 'correct horse battery') {
  const p = spawn(BIN, ['admin', 'create-user', '--data-dir', dataDir, '--username', username, '--role', role],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  p.stdin.end(password + '\n');
  const code = await new Promise((r) => p.on('exit', r));
  if (code !== 0) throw new Error(`create-user ${username}: exit ${code}: ${err}`);
  return out;
}

// Assert the standard error shape and return the error object.
export function errorOf(res) {
  const e = res.json && res.json.error;
  if (!e || typeof e.code !== 'string' || typeof e.message !== 'string' || !/^[a-z_]+$/.test(e.code)) {
    throw new Error(`not a JSON error: ${res.status} ${res.text}`);
  }
  return e;
}
