// `caresync serve` defaults (issue 12.4): no path of the source tree is
// compiled into the binary — run from another directory it finds web/ and
// the bundled model beside the executable (build/caresync → ../web) — and
// the options, their usage text and their dispatch come from one table
// (the ledger's defaults from ledger_options_defaults()).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './harness.mjs';

const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

test('no source-tree path of web/, models/ or node_modules is compiled into the binary', () => {
  const bytes = readFileSync(BIN);
  for (const p of [`${ROOT}/web`, `${ROOT}/models/screening.csm`, `${ROOT}/node_modules`, `${ROOT}/../shared`])
    assert.equal(bytes.indexOf(Buffer.from(p)), -1, `${p} is in ${BIN}`);
});

// Not in the debug information either (file and directory names: `strings
// build/caresync | grep` showed 124 paths under the tree): -ffile-prefix-map
// makes them relative to the source root. Checked on the binary `make build`
// makes (`make test` builds it first): the sanitizer build's ASan module
// names and UBSan type descriptors still carry the compiler's absolute
// source names.
test('no path under the source tree is anywhere in the release binary', () => {
  const release = process.env.CARESYNC_RELEASE_BIN || join(ROOT, 'build', 'caresync');
  assert.ok(existsSync(release), `${release} is missing: run make build`);
  const bytes = readFileSync(release);
  const at = bytes.indexOf(Buffer.from(`${ROOT}/`));
  const around = at < 0 ? '' : bytes.subarray(at, at + 80).toString('latin1').split('\0')[0];
  assert.equal(at, -1, `${around} is in ${release}`);
});

test('serve run from another directory finds web/ and the model beside the executable', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'caresync-cwd-'));
  const proc = spawn(BIN, ['serve', '--port', '0', '--data-dir', join(cwd, 'var')], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('server did not start in 60 s: ' + stderr)), 60000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on http:\/\/[^:]+:(\d+)\//);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
    });
    const r = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), readFileSync(join(ROOT, 'web', 'index.html'), 'utf8'));
    assert.match(stderr, /screening model \S+models\/screening\.csm loaded/);
    assert.doesNotMatch(stderr, /screening disabled/);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((resolve) => (proc.exitCode !== null ? resolve() : proc.on('exit', resolve)));
    rmSync(cwd, { recursive: true, force: true });
  }
});

test('serve --help shows the ledger defaults and every option it lists is dispatched under its own name', () => {
  const help = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--ledger-batch-ms N\s+seal pending ledger transactions at least every N ms \(default 10\)/);
  assert.match(help.stdout, /--ledger-batch-max N\s+\.\.\. or as soon as N are pending \(default 4096\)/);
  assert.match(help.stdout, /demographics data \(default 10,5,5,2\)/);
  const opts = [...help.stdout.matchAll(/^ {2}--([a-z0-9-]+)(?: (\S+))?/gm)].map((m) => ({ name: m[1], arg: m[2] }));
  assert.ok(opts.length >= 35, `only ${opts.length} options listed`);
  assert.equal(new Set(opts.map((o) => o.name)).size, opts.length, 'an option is listed twice');
  for (const o of opts) {
    if (!o.arg) continue;
    // A value no number parses as; the unknown option after it stops a
    // string option's run before anything starts.
    const r = spawnSync(BIN, ['serve', `--${o.name}`, 'x', '--no-such-option'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `--${o.name}: ${r.stderr}`);
    const bad = r.stderr.match(/bad value for --([a-z0-9-]+): x/);
    if (/^(N|SECONDS|BYTES|K|E|S,C,Y,D|LEVEL)$/.test(o.arg)) assert.ok(bad, `--${o.name} x was accepted: ${r.stderr}`);
    if (bad) assert.equal(bad[1], o.name);
  }
});
