// `caresync surveil detect` on an epidemiologist's own files (issue 11.9):
// the command itself, not only its parser, reads CSV exactly as R's
// write.csv writes it (tests/fixtures/surveil/r-write-csv.csv: every header
// and label quoted, R's row names first under ""), RFC 4180's doubled quotes,
// CRLF, a BOM and an empty last line, and gives the same answer as for the
// same counts written plainly; malformed quoting is refused with its line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './harness.mjs';

const R_FILE = new URL('../fixtures/surveil/r-write-csv.csv', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'caresync-detect-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const detect = (file, input) => spawnSync(BIN, ['surveil', 'detect', '--method', 'c1', file],
  { encoding: 'utf8', input, timeout: 60000 });

// The counts of r-write-csv.csv as a plain, unquoted table.
const WEEKS = Array.from({ length: 16 }, (_, i) => `2024-W${String(i + 1).padStart(2, '0')}`);
const NORTH = [3, 5, 4, 6, 3, 5, 4, 7, 5, 4, 6, 5, 4, 21, 18, 6];
const EAST = [0, 1, 0, 2, 1, 0, 1, 1, 0, 2, 1, 0, 1, 1, 0, 12];

test('the file R\'s write.csv writes is read as is, and answers as the plain table does', () => {
  const text = readFileSync(R_FILE, 'utf8');
  assert.match(text, /^"","week","north","Kent, East"\n"1","2024-W01",3,0\n/, 'the fixture is R\'s format');
  const r = detect(R_FILE);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const plain = join(dir, 'plain.csv');
  writeFileSync(plain, 'week,north,"Kent, East"\n' + WEEKS.map((w, i) => `${w},${NORTH[i]},${EAST[i]}`).join('\n') + '\n');
  const p = detect(plain);
  assert.equal(p.status, 0, p.stderr);
  assert.equal(r.stdout, p.stdout);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines[0], 'series,week,observed,upperbound,alarm,statistic,expected');
  // Two series (R's row names are not one), each labelled by its weeks;
  // C1 flags week 14's 21 in north and week 16's 12 in "Kent, East".
  assert.ok(lines.some((l) => l.startsWith('north,2024-W14,21,') && l.split(',')[4] === '1'), r.stdout);
  assert.ok(lines.some((l) => /^"Kent, East",2024-W16,12,[^,]+,1,/.test(l)), r.stdout);
  assert.ok(!lines.some((l) => /^"?(1|"")?,/.test(l)), 'a series named after R\'s row names');
  // As saved on Windows or by Excel: a BOM, CRLF, an empty last line; from stdin too.
  const win = '\uFEFF' + text.replace(/\n/g, '\r\n') + '\r\n';
  const w = detect('-', win);
  assert.equal(w.status, 0, w.stderr);
  assert.equal(w.stdout, r.stdout);
});

test('doubled quotes inside a quoted name are one quote; bad quoting is refused with its line', () => {
  const f = join(dir, 'quotes.csv');
  writeFileSync(f, '"week","O""Brien ward"\r\n' + WEEKS.map((w, i) => `"${w}",${NORTH[i]}`).join('\r\n') + '\r\n');
  const r = detect(f);
  assert.equal(r.status, 0, r.stderr);
  // The name read is O"Brien ward, written back as RFC 4180 does.
  assert.match(r.stdout, /^"O""Brien ward",2024-W14,21,[^,]+,1,/m);
  const bad = join(dir, 'bad.csv');
  writeFileSync(bad, '"week","north"\n"2024-W01",3\n"2024-W02,5\n');
  const b = detect(bad);
  assert.equal(b.status, 1);
  assert.equal(b.stdout, '');
  assert.match(b.stderr, /bad\.csv: line 3: bad quoting/);
});
