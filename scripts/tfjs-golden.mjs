// Golden outputs of nsfwjs's TF.js models, computed by TensorFlow.js itself
// (@tensorflow/tfjs, pure-JS CPU backend), for tests/unit/test_nn_tfjs.c.
//
//   node scripts/tfjs-golden.mjs TFJS_PREFIX [MODELS_DIR] [CAT_BMP] [OUT_DIR]
//
// TFJS_PREFIX is a directory where `npm install @tensorflow/tfjs@4.22.0` was
// run (e.g. /tmp/tfjs; never the repository: tfjs is not a CareSync
// dependency, and tfjs-node would download binaries). MODELS_DIR defaults to
// node_modules/nsfwjs/dist/models, CAT_BMP to ../shared/models/cat.bmp, OUT_DIR
// to tests/golden/tfjs.
//
// Inputs are defined by pixel rules that the C test repeats exactly, so both
// sides run the network on the same bytes (no resampler in between):
//   cat       the centre square of cat.bmp, nearest pixel: source row/column
//             = offset + (i·side) / size in integers
//   gradient  R = 255x/(S−1), G = 255y/(S−1), B = 255(x+y)/(2S−2), integers
//   noise     ((73856093x) xor (19349663y) xor (83492791c)) mod 256, in 32 bits
// Every model gets p/255 (nsfwjs's own preprocessing); the graph model then
// scales further inside the graph. Per image the file holds the globally
// pooled features and the logits (the final Dense before its softmax).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [tfjsPrefix, modelsDir = 'node_modules/nsfwjs/dist/models', catPath = '../shared/models/cat.bmp',
  outDir = 'tests/golden/tfjs'] = process.argv.slice(2);
if (!tfjsPrefix) {
  console.error('usage: node scripts/tfjs-golden.mjs TFJS_PREFIX [MODELS_DIR] [CAT_BMP] [OUT_DIR]');
  process.exit(2);
}
const req = createRequire(path.resolve(tfjsPrefix, 'package.json'));
const tf = req('@tensorflow/tfjs');
await tf.setBackend('cpu');
const localReq = createRequire(import.meta.url);

// A 24-bit bottom-up BMP as {w, h, px(x, y, c)}.
function readBmp(file) {
  const b = fs.readFileSync(file);
  if (b.toString('latin1', 0, 2) !== 'BM') throw new Error('not a BMP');
  const off = b.readUInt32LE(10), w = b.readInt32LE(18), h = b.readInt32LE(22), bpp = b.readUInt16LE(28);
  if (bpp !== 24 || h <= 0 || b.readUInt32LE(30) !== 0) throw new Error('expected a bottom-up 24-bit BMP');
  const stride = Math.ceil((w * 3) / 4) * 4;
  return { w, h, px: (x, y, c) => b[off + (h - 1 - y) * stride + x * 3 + (2 - c)] };
}

function images(size) {
  const out = {};
  if (fs.existsSync(catPath)) {
    const bmp = readBmp(catPath), side = Math.min(bmp.w, bmp.h);
    const x0 = Math.floor((bmp.w - side) / 2), y0 = Math.floor((bmp.h - side) / 2);
    out.cat = (x, y, c) => bmp.px(x0 + Math.floor((x * side) / size), y0 + Math.floor((y * side) / size), c);
  }
  out.gradient = (x, y, c) =>
    c === 0 ? Math.floor((255 * x) / (size - 1)) : c === 1 ? Math.floor((255 * y) / (size - 1))
      : Math.floor((255 * (x + y)) / (2 * size - 2));
  out.noise = (x, y, c) => ((Math.imul(73856093, x) ^ Math.imul(19349663, y) ^ Math.imul(83492791, c)) >>> 0) & 255;
  return out;
}

function tensorOf(fn, size) {
  const a = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let c = 0; c < 3; c++) a[(y * size + x) * 3 + c] = fn(x, y, c) / 255;
  return tf.tensor4d(a, [1, size, size, 3]);
}

// nsfwjs's bundles: model.min.js exports the model.json object, each shard
// NAME.min.js a base64 string.
function loadBundle(dir) {
  const model = localReq(path.resolve(dir, 'model.min.js'));
  const specs = [], bufs = [];
  for (const g of model.weightsManifest) {
    specs.push(...g.weights);
    for (const p of g.paths) bufs.push(Buffer.from(localReq(path.resolve(dir, p + '.min.js')), 'base64'));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  return {
    model,
    handler: {
      load: async () => ({ modelTopology: model.modelTopology, weightSpecs: specs, weightData, format: model.format,
        userDefinedMetadata: model.userDefinedMetadata }),
    },
  };
}

const round = (v) => Array.from(v, (x) => Number(x.toPrecision(8)));

async function run(name) {
  const dir = path.join(modelsDir, name);
  const { model, handler } = loadBundle(dir);
  const graph = Array.isArray(model.modelTopology.node);
  let size, forward;
  if (graph) {
    const g = await tf.loadGraphModel(handler);
    const nodes = model.modelTopology.node;
    const pool = nodes.find((n) => n.op === 'AvgPool' || n.op === 'Mean').name;
    const logits = nodes.find((n) => n.op === 'Softmax').input[0];
    size = Number(nodes.find((n) => n.op === 'Placeholder').attr.shape.shape.dim[1].size);
    forward = (x) => g.execute(x, [pool, logits]);
  } else {
    const m = await tf.loadLayersModel(handler);
    const pools = m.layers.filter((l) => /AveragePooling2D$/.test(l.getClassName()));
    const last = m.layers[m.layers.length - 1];
    // The output Dense before its softmax: its input times its kernel, plus bias.
    const sub = tf.model({ inputs: m.inputs, outputs: [pools[pools.length - 1].output, last.input] });
    const [k, b] = last.getWeights();
    size = m.inputs[0].shape[1];
    forward = (x) => {
      const [f, h] = sub.predict(x);
      return [f, tf.add(tf.matMul(h, k), b)];
    };
  }
  const out = { model: name, tfjs: tf.version.tfjs, backend: tf.getBackend(), size, images: {} };
  for (const [img, fn] of Object.entries(images(size))) {
    const t0 = Date.now();
    const [f, l] = forward(tensorOf(fn, size));
    out.images[img] = { features: round(f.dataSync()), logits: round(l.dataSync()) };
    console.log(`${name} ${img}: ${f.size} features, logits ${round(l.dataSync()).join(' ')} (${Date.now() - t0} ms)`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(out) + '\n');
}

for (const name of ['inception_v3', 'mobilenet_v2', 'mobilenet_v2_mid']) await run(name);
