// Graceful shutdown: SIGTERM / SIGINT while a burst of concurrent writes is in
// flight. The process must exit 0 within 10 s, and after a restart on the same
// data directory every write that was answered 201 must be there, no write
// refused with 503 may be there, and no write may be committed unanswered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, Client } from './harness.mjs';

const PW = 'correct horse battery';
const BURST = 240;
const EXIT_DEADLINE_MS = 10000;

async function shutdownDuringBurst(signal) {
  const srv = await startServer();
  let srv2;
  try {
    const c = new Client(srv.base);
    await c.signup(`shut-${signal.toLowerCase()}`, PW);
    const baseline = [];
    for (let i = 0; i < 5; i++) {
      const r = await c.post('/api/records', { kind: 'note', title: `baseline ${i}` });
      assert.equal(r.status, 201, r.text);
      baseline.push(r.json.record.id);
    }

    // Fire the burst; send the signal once a tenth of it has been answered.
    const outcomes = new Array(BURST);
    let answered = 0, answeredAtSignal = -1, signalledAt = 0;
    const fire = (i) => c.post('/api/records', { kind: 'note', title: `burst ${i}`, details: `write number ${i}` })
      .then((r) => {
        outcomes[i] = { i, status: r.status, id: r.json && r.json.record && r.json.record.id, text: r.text, json: r.json, retryAfter: r.headers.get('retry-after') };
      })
      .catch((e) => { outcomes[i] = { i, status: 0, error: (e.cause && e.cause.code) || e.message }; })
      .finally(() => {
        answered++;
        if (answeredAtSignal < 0 && answered >= BURST / 10) {
          answeredAtSignal = answered;
          signalledAt = Date.now();
          srv.proc.kill(signal);
        }
      });
    const all = Promise.all(Array.from({ length: BURST }, (_, i) => fire(i)));

    let timer;
    const exit = await Promise.race([
      srv.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), EXIT_DEADLINE_MS + 5000); }),
    ]);
    clearTimeout(timer);
    await all;
    assert.notEqual(exit, 'timeout', `server did not exit after ${signal}`);
    const took = Date.now() - signalledAt;
    assert.ok(answeredAtSignal > 0 && answeredAtSignal < BURST, `the signal must arrive mid-burst (${answeredAtSignal}/${BURST})`);
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after ${signal}; stderr:\n${srv.stderr}`);
    assert.ok(took < EXIT_DEADLINE_MS, `exit took ${took} ms`);
    // Log lines are "<time> <level> <message>"; nothing at level error, no sanitizer report.
    assert.doesNotMatch(srv.stderr, /^\S+\s+error\s|AddressSanitizer|runtime error/m, `errors logged during shutdown:\n${srv.stderr}`);

    const ok = outcomes.filter((o) => o.status === 201);
    // Asked to come back later: 503 shutting_down with Retry-After, nothing written.
    const refused = outcomes.filter((o) => o.status === 503 && o.json && o.json.error && o.json.error.code === 'shutting_down');
    for (const o of refused) assert.match(o.retryAfter || '', /^\d+$/, '503 without Retry-After');
    const bad = outcomes.filter((o) => o.status !== 201 && o.status !== 0 && !refused.includes(o));
    // A request completed (201), was refused cleanly (503), or never got an answer; nothing else.
    assert.deepEqual(bad.map((o) => `${o.status} ${o.text.slice(0, 100)}`), [], 'error responses during shutdown');
    assert.ok(ok.length >= answeredAtSignal * 0.5, `only ${ok.length} writes succeeded`);

    // Restart on the same data directory; the session (a stored row) is still valid.
    srv2 = await startServer([], { dataDir: srv.dataDir });
    c.base = srv2.base;
    const h = await c.get('/api/health');
    assert.equal(h.json.storage.ok, true);
    const list = await c.get('/api/records');
    assert.equal(list.status, 200, list.text);
    const stored = new Map(list.json.records.map((r) => [r.id, r]));
    const lost = ok.filter((o) => !stored.has(o.id));
    assert.deepEqual(lost.map((o) => o.id), [], `${lost.length} of ${ok.length} acknowledged writes were lost`);
    for (const id of baseline) assert.ok(stored.has(id), `baseline ${id} lost`);
    for (const o of ok) assert.equal(stored.get(o.id).title, `burst ${o.i}`);
    // Nothing half-written: every stored row opens and is one of ours.
    for (const r of list.json.records) assert.match(r.title, /^(baseline|burst) \d+$/);
    assert.ok(list.json.records.length <= baseline.length + BURST);
    // A refused write was not stored.
    const storedTitles = new Set(list.json.records.map((r) => r.title));
    const refusedButStored = refused.filter((o) => storedTitles.has(`burst ${o.i}`));
    assert.deepEqual(refusedButStored.map((o) => o.i), [], 'writes answered 503 were stored anyway');
    // Graceful means in-flight requests finish *and are answered*: a write
    // that was committed got its 201 (else the client cannot tell it from a
    // lost one, and a retry makes a duplicate).
    const committed = list.json.records.filter((r) => r.title.startsWith('burst ')).length;
    assert.equal(committed, ok.length, `${committed} burst writes were committed but only ${ok.length} were answered 201`);
    // And the restarted server takes writes again.
    assert.equal((await c.post('/api/records', { kind: 'note', title: 'after restart' })).status, 201);
    return { acknowledged: ok.length, refused: refused.length, unanswered: outcomes.filter((o) => o.status === 0).length, stored: list.json.records.length };
  } finally {
    if (srv2) await srv2.stop();
    await srv.stop();
    rmSync(srv.dataDir, { recursive: true, force: true });
  }
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} during a burst of writes: exit 0 within 10 s, no acknowledged write lost`, async (t) => {
    const r = await shutdownDuringBurst(signal);
    t.diagnostic(`${signal}: ${r.acknowledged} acknowledged, ${r.refused} refused (503), ${r.unanswered} unanswered, ${r.stored} rows after restart`);
  });
}

test('SIGTERM on an idle server with open keep-alive connections exits promptly', async () => {
  const srv = await startServer();
  try {
    const c = new Client(srv.base);
    for (let i = 0; i < 5; i++) assert.equal((await c.get('/api/health')).status, 200); // leaves pooled connections open
    const t0 = Date.now();
    const exit = await srv.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < EXIT_DEADLINE_MS, `took ${Date.now() - t0} ms`);
  } finally {
    srv.cleanup();
  }
});
