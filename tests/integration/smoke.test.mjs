import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client } from './harness.mjs';

test('health answers with version, uptime and storage status', async () => {
  const srv = await startServer();
  try {
    const c = new Client(srv.base);
    const r = await c.get('/api/health');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'ok');
    assert.match(r.json.version, /^\d+\.\d+\.\d+$/);
    assert.equal(typeof r.json.uptime_s, 'number');
    assert.equal(r.json.storage.ok, true);
    assert.equal(r.json.storage.journal_mode, 'wal');
  } finally {
    await srv.stop();
    srv.cleanup();
  }
});
