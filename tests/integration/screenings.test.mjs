// Screenings over HTTP: a real photo in, a result out (top three conditions
// with probabilities, triage, advice, the not-a-diagnosis notice), fetchable
// only by the same person; every refusal with its own code; the per-account
// rate limit; a GPS-tagged upload leaves no GPS byte anywhere on disk; and
// without a model the service says so (503) instead of guessing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { startServer, Client, errorOf } from './harness.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const haveData = existsSync(join(SHARED, 'data')) && existsSync(join(SHARED, 'models'));
const haveModel = haveData && existsSync(MODEL);

// A minimal PNG encoder (8-bit RGB), for synthetic test images.
function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function png(w, h, pixel) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = pixel(x, y); const o = y * (w * 3 + 1) + 1 + x * 3;
    raw[o] = r; raw[o + 1] = g; raw[o + 2] = b;
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// A JPEG with an EXIF APP1 segment whose GPS latitude reference is a marker
// string: if any byte of it survived anywhere, the marker would be found.
const GPS_MARKER = 'GPSMARK-51.5007N-0.1246W';
function withExifMarker(jpeg) {
  const tiff = Buffer.concat([Buffer.from('MM\0*\0\0\0\x08', 'binary'), Buffer.from([0, 1, 0x01, 0x0e, 0, 2]),
    Buffer.from([0, 0, 0, GPS_MARKER.length + 1, 0, 0, 0, 26]), Buffer.from([0, 0, 0, 0]),
    Buffer.from(GPS_MARKER + '\0')]);
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'binary'), tiff]);
  const len = Buffer.alloc(2); len.writeUInt16BE(body.length + 2);
  return Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xe1]), len, body, jpeg.subarray(2)]);
}

function firstImage(set, cls) {
  const dir = join(SHARED, 'data', set, 'test', cls);
  return readFileSync(join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[0]));
}

function form(bytes, name = 'photo.jpg', field = 'photo') {
  const f = new FormData();
  f.append(field, new Blob([bytes]), name);
  return f;
}

let srv, alice, bob;

before(async () => {
  srv = await startServer(['--screenings-per-window', '12']);
  alice = new Client(srv.base);
  bob = new Client(srv.base);
  await alice.signup('scr.alice');
  await bob.signup('scr.bob');
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

async function expectError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: ${res.text}`);
  assert.equal(errorOf(res).code, code, `${what}: ${res.text}`);
}

test('photos that cannot be screened are refused with their own code, before any model runs', async () => {
  await expectError(await alice.post('/api/screenings', form(Buffer.from('plain text, not a photo')), { raw: true }),
    422, 'not_an_image', 'text');
  await expectError(await alice.post('/api/screenings', form(png(60, 60, () => [200, 150, 120])), { raw: true }),
    422, 'image_too_small', 'small');
  await expectError(await alice.post('/api/screenings', form(png(300, 300, () => [2, 2, 2])), { raw: true }),
    422, 'too_dark', 'black');
  const whole = png(300, 300, (x, y) => [180 + (x % 7), 130 + (y % 5), 110]);
  await expectError(await alice.post('/api/screenings', form(whole.subarray(0, whole.length - 40)), { raw: true }),
    422, 'corrupt_image', 'truncated');
  await expectError(await alice.post('/api/screenings', form(Buffer.from('x'), 'a.jpg', 'picture'), { raw: true }),
    422, 'photo_missing', 'wrong field');
  await expectError(await alice.post('/api/screenings', { photo: 'base64?' }), 415, 'unsupported_media_type', 'json');
  // Over 20 MB (a JPEG start, then filler): refused by size.
  const big = Buffer.alloc((20 << 20) + 10000, 0x41);
  big.set([0xff, 0xd8, 0xff, 0xe0]);
  const r = await alice.post('/api/screenings', form(big), { raw: true });
  assert.equal(r.status, 413, r.text);
  assert.ok(['payload_too_large', 'file_too_large'].includes(errorOf(r).code), r.text);
  // Staff cannot use it; anonymous must log in.
  await expectError(await new Client(srv.base).post('/api/screenings', form(Buffer.from('x')), { raw: true }),
    401, 'unauthenticated', 'anonymous');
});

test('a real photo gets top three conditions, triage, advice and the notice; only its owner sees it',
  { skip: !haveModel && 'no models/screening.csm or ../shared (train it with caresync train)' }, async () => {
    const photo = withExifMarker(firstImage('skin-infections-8', 'ringworm'));
    const r = await alice.post('/api/screenings', form(photo), { raw: true });
    assert.equal(r.status, 201, r.text);
    const s = r.json.screening;
    assert.match(s.id, /^[0-9a-f]{32}$/);
    assert.equal(s.top.length, 3);
    let sum = 0;
    for (const t of s.top) {
      assert.ok(t.probability >= 0 && t.probability <= 1, JSON.stringify(t));
      assert.ok(t.condition && t.name && t.advice.length > 40 && t.triage, JSON.stringify(t));
      sum += t.probability;
    }
    assert.ok(sum <= 1.001);
    assert.ok(s.top[0].probability >= s.top[1].probability && s.top[1].probability >= s.top[2].probability);
    assert.ok(['self_care', 'pharmacist_or_gp', 'see_doctor_soon', 'urgent'].includes(s.triage));
    assert.match(s.notice, /not a diagnosis/);
    assert.ok(['confident', 'unsure_low_confidence', 'unsure_not_skin'].includes(s.verdict));
    // A ringworm photo from the held-out split should come out fungal.
    assert.equal(s.top[0].condition, 'fungal', JSON.stringify(s.top));
    const again = await alice.get(`/api/screenings/${s.id}`);
    assert.equal(again.status, 200);
    assert.deepEqual(again.json.screening, s);
    await expectError(await bob.get(`/api/screenings/${s.id}`), 404, 'not_found', "another person's screening");
    // Saved into the private record: without the photo, then with it.
    await expectError(await alice.post(`/api/screenings/${s.id}/save`, { with_photo: 'yes' }), 422, 'validation_failed',
      'with_photo not a boolean');
    await expectError(await bob.post(`/api/screenings/${s.id}/save`, { with_photo: true }), 404, 'not_found',
      "saving another person's screening");
    await expectError(await alice.post(`/api/screenings/${'0'.repeat(32)}/save`, {}), 404, 'not_found', 'unknown id');
    const plain = await alice.post(`/api/screenings/${s.id}/save`, { with_photo: false });
    assert.equal(plain.status, 201, plain.text);
    const noted = plain.json.record;
    assert.equal(noted.kind, 'note');
    assert.match(noted.title, /^Skin check: /);
    assert.ok(noted.details.includes(s.top[0].name) && noted.details.includes(s.advice), noted.details);
    assert.ok(noted.details.includes(s.triage_label) && /not a diagnosis/.test(noted.details), noted.details);
    assert.equal(noted.photo, undefined);
    await expectError(await alice.get(`/api/records/${noted.id}/photo`), 404, 'not_found', 'a record without photo');
    // Saving the same again returns the first record (200), not a second copy.
    const count = async () => (await alice.get('/api/records')).json.records.length;
    const n = await count();
    const repeat = await alice.post(`/api/screenings/${s.id}/save`, { with_photo: false });
    assert.equal(repeat.status, 200, repeat.text);
    assert.deepEqual(repeat.json.record, noted);
    assert.equal(await count(), n, 'a repeated save made a second record');
    const withPhoto = await alice.post(`/api/screenings/${s.id}/save`, { with_photo: true });
    assert.equal(withPhoto.status, 201, withPhoto.text);
    const kept = withPhoto.json.record;
    assert.equal(kept.photo.type, 'image/jpeg');
    assert.notEqual(kept.id, noted.id);
    // Concurrent repeats (a double tap) also get that one record.
    const taps = await Promise.all([1, 2, 3].map(() => alice.post(`/api/screenings/${s.id}/save`, { with_photo: true })));
    for (const t of taps) {
      assert.equal(t.status, 200, t.text);
      assert.equal(t.json.record.id, kept.id);
    }
    assert.equal(await count(), n + 1);
    const img = await alice.get(`/api/records/${kept.id}/photo`);
    assert.equal(img.status, 200);
    assert.equal(img.headers.get('content-type'), 'image/jpeg');
    assert.equal(img.headers.get('cache-control'), 'no-store');
    assert.equal(img.bytes.length, kept.photo.bytes);
    assert.deepEqual([...img.bytes.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    assert.equal(createHash('sha256').update(img.bytes).digest('hex'), kept.photo.sha256);
    // Pixels only: no EXIF segment, no byte of the GPS marker.
    assert.ok(!img.bytes.includes('Exif') && !img.bytes.includes(GPS_MARKER));
    await expectError(await bob.get(`/api/records/${kept.id}/photo`), 404, 'not_found', "another person's photo");
    const listed = (await alice.get('/api/records')).json.records.find((e) => e.id === kept.id);
    assert.equal(listed.photo.sha256, kept.photo.sha256);
    // Deleting the entry deletes its photo.
    assert.equal((await alice.del(`/api/records/${kept.id}`)).status, 200);
    await expectError(await alice.get(`/api/records/${kept.id}/photo`), 404, 'not_found', 'a deleted photo');
    // Once the first record is deleted, saving again makes a new one.
    const resaved = await alice.post(`/api/screenings/${s.id}/save`, { with_photo: true });
    assert.equal(resaved.status, 201, resaved.text);
    assert.notEqual(resaved.json.record.id, kept.id);
    assert.equal((await alice.del(`/api/records/${resaved.json.record.id}`)).status, 200);
    // The photo's metadata went nowhere: no byte of the GPS marker on disk.
    const files = [];
    const walk = (d) => { for (const e of readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(join(d, e.name)) : files.push(join(d, e.name)); };
    walk(srv.dataDir);
    for (const f of files) assert.ok(!readFileSync(f).includes(GPS_MARKER), `GPS marker found in ${f}`);
    assert.ok(!r.text.includes('GPSMARK'));
  });

test('uploads are rate-limited per account', async () => {
  const limited = await startServer(['--screenings-per-window', '2', '--screenings-window', '600']);
  try {
    const c = new Client(limited.base);
    await c.signup('scr.rate');
    const junk = () => form(Buffer.from('not a photo'));
    assert.equal((await c.post('/api/screenings', junk(), { raw: true })).status, 422);
    assert.equal((await c.post('/api/screenings', junk(), { raw: true })).status, 422);
    const r = await c.post('/api/screenings', junk(), { raw: true });
    await expectError(r, 429, 'rate_limited', 'third upload');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    // Another account is not affected.
    const d = new Client(limited.base);
    await d.signup('scr.rate2');
    assert.equal((await d.post('/api/screenings', junk(), { raw: true })).status, 422);
  } finally {
    await limited.stop();
    limited.cleanup();
  }
});

test('without a model the service says screening is unavailable instead of guessing',
  { skip: !haveData && '../shared is absent' }, async () => {
    const bare = await startServer(['--model', '/nonexistent/model.csm']);
    try {
      const c = new Client(bare.base);
      await c.signup('scr.nomodel');
      const r = await c.post('/api/screenings', form(firstImage('isic-melanoma-10k', 'benign')), { raw: true });
      await expectError(r, 503, 'model_unavailable', 'no model');
      assert.equal((await c.get('/api/health')).status, 200);
    } finally {
      await bare.stop();
      bare.cleanup();
    }
  });
