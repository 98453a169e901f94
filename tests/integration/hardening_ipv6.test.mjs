// Slow clients over IPv6 (issue 11.1): one subscriber usually holds a whole
// /64, so the per-address connection limit counts an IPv6 client per /64.
// libmicrohttpd's own limit counts per full address: 40 sockets from 40
// addresses of one /64 were all held with a limit of 4.
//
// Many IPv6 addresses need a network of their own: the test runs itself
// again inside `unshare -rn` (a user and network namespace, no privilege
// needed), where it gives loopback addresses from two /64s and the server
// listens on ::1. Skipped where user namespaces are not allowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, WEB_DIR } from './harness.mjs';

const SELF = fileURLToPath(import.meta.url);
const INSIDE = process.env.CARESYNC_NETNS === '1';
const SLOW = 40, LIMIT = 4;
const addr = (i) => `2001:db8::${(i + 16).toString(16)}`; // one /64
const OTHER = '2001:db8:0:1::1'; // another /64
// Set up inside the namespace: loopback up, the addresses on it.
const SETUP = ['ip link set lo up',
  ...Array.from({ length: SLOW + 1 }, (_, i) => `ip -6 addr add ${addr(i)}/64 dev lo nodad`),
  `ip -6 addr add ${OTHER}/64 dev lo nodad`].join(' && ');

const canUnshare = () => spawnSync('unshare', ['-rn', 'sh', '-c', 'ip link set lo up'], { encoding: 'utf8' }).status === 0;

if (!INSIDE) {
  const skip = canUnshare() ? false : 'user network namespaces (unshare -rn) are not available here';
  test('per-/64 connection limit (run in a network namespace of its own)', { skip }, () => {
    // NODE_TEST_CONTEXT would make the inner run report to this runner's
    // protocol instead of printing TAP.
    const env = { ...process.env, CARESYNC_NETNS: '1' };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync('unshare', ['-rn', 'sh', '-c', `${SETUP} && exec "$0" --test --test-reporter=tap "$1"`,
      process.execPath, SELF], { encoding: 'utf8', env, timeout: 120000 });
    assert.equal(r.status, 0, `inside the namespace:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^# pass 1$/m, r.stdout);
  });
} else {
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

  async function startV6() {
    const dataDir = mkdtempSync(join(tmpdir(), 'caresync-v6-'));
    const proc = spawn(BIN, ['serve', '--host', '::1', '--port', '0', '--data-dir', dataDir, '--web-dir', WEB_DIR,
      '--log-level', 'warn', '--max-connections', '64', '--max-connections-per-ip', String(LIMIT), '--head-timeout', '5'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    const port = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('server did not start: ' + stderr)), 20000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on http:\/\/::1:(\d+)\//);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
    });
    return { port, proc, dataDir, get stderr() { return stderr; } };
  }

  // A socket from `from` that sends a partial request head; resolves with a
  // handle telling whether the server has closed it.
  function slow(port, from) {
    return new Promise((resolve, reject) => {
      const st = { open: true };
      const s = net.connect({ host: '::1', port, localAddress: from, family: 6 });
      s.on('connect', () => { s.write('GET /api/health HTTP/1.1\r\nHost: x\r\n'); resolve({ st, s }); });
      s.on('data', () => {});
      s.on('close', () => { st.open = false; });
      s.on('error', (e) => { st.open = false; reject(e); });
    });
  }

  function health(port, from) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '::1', port, localAddress: from, family: 6 });
      let text = '';
      s.on('connect', () => s.write('GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      s.on('data', (d) => { text += d; });
      s.on('close', () => resolve(text));
      s.on('error', reject);
      setTimeout(() => { s.destroy(); resolve(text); }, 5000);
    });
  }

  test('sockets from many addresses of one /64 count as one client; another /64 is served', async () => {
    const srv = await startV6();
    const socks = [];
    try {
      for (let i = 0; i < SLOW; i++) socks.push(await slow(srv.port, addr(i)));
      await sleep(1000);
      const held = socks.filter((x) => x.st.open).length;
      assert.equal(held, LIMIT, `${held} of ${SLOW} sockets from one /64 held open; the limit is ${LIMIT}`);
      // Another subscriber is answered; this /64 is still full.
      assert.match(await health(srv.port, OTHER), /^HTTP\/1\.1 200 /);
      assert.equal(await health(srv.port, addr(SLOW)), '', 'a new address of the full /64 was served');
      // Once the held sockets go, the /64 is served again.
      socks.forEach((x) => x.s.destroy());
      await sleep(300);
      assert.match(await health(srv.port, addr(SLOW)), /^HTTP\/1\.1 200 /);
    } finally {
      socks.forEach((x) => x.s.destroy());
      srv.proc.kill('SIGTERM');
      await new Promise((r) => srv.proc.on('exit', r));
      rmSync(srv.dataDir, { recursive: true, force: true });
    }
  });
}
