// Surveillance dashboard (analysts and admins): a choropleth of the latest
// week, a weekly chart with the detector's threshold and alarms, alerts to
// acknowledge, and exports of exactly the release shown. Every number comes
// from the server's protected release; this page never adds counts up
// itself (a sum over suppressed cells is exactly what suppression hides).
// d3 (d3-geo), topojson and uPlot are npm packages copied to /vendor by
// `make deps` (scripts/vendor.sh); their UMD builds are loaded here, in
// order, as same-origin scripts (the CSP allows nothing else).
import { api, ApiError } from './api.js';
import { startPage } from './layout.js';
import { el, $ } from './dom.js';

/* global d3, topojson, uPlot */
const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['#eef4fb', '#c6dbef', '#9ecae1', '#6baed6', '#3182bd', '#08519c'];

const state = { overview: null, release: null, region: null, names: {}, query: '' };

function message(text, kind = 'error') {
  const m = $('#surveil-message');
  m.textContent = text;
  m.className = `form-message ${text ? `form-message-${kind}` : ''}`;
}

function filters() {
  const f = $('#filters');
  return {
    country: f.country.value, condition: f.condition.value, from: f.from.value, to: f.to.value, method: f.method.value,
    source: f.source.value,
  };
}

function queryString(f) {
  const p = new URLSearchParams({ country: f.country, from: f.from, to: f.to });
  if (f.condition !== 'all') p.set('condition', f.condition);
  if (f.source) p.set('source', f.source);
  return p.toString();
}

const SOURCE_LABEL = {
  model: 'model screenings', clinician_confirmed: 'clinician-confirmed cases', self_reported: 'self-reported cases',
};

// A source's view is not a slice of the all-sources numbers: it is its own
// release (fingerprint, log entry, ledger record), suppressed together with
// the totals, so it may hide cells the plain release shows. Say so.
function sourceNote(rel, f) {
  const note = $('#source-note');
  note.hidden = !f.source;
  note.dataset.source = rel.source || '';
  note.textContent = f.source
    ? `Showing ${SOURCE_LABEL[f.source] || f.source} only. This is a separate release by source, with its own `
      + 'suppression: its counts are hidden wherever they, or the totals beside them, could single anyone out, so it may '
      + 'hide counts the all-sources view shows, and the sources need not add up to it. The alerts below cover all sources.'
    : '';
}

// The value of region index r (or the country, r = -1) in week w of the release.
function valueOf(rel, w, r, condition) {
  const wk = rel.weeks[w];
  const c = condition === 'all' ? -1 : rel.conditions.indexOf(condition);
  if (r < 0) return c < 0 ? wk.total : wk.condition_totals[c];
  return c < 0 ? wk.region_totals[r] : wk.cells[r][c];
}

// ---- map ----
const atlases = {};
async function atlas(file) {
  if (!atlases[file]) {
    const res = await fetch(`/vendor/${file}`);
    if (!res.ok) throw new Error('the map data is missing (run make deps)');
    atlases[file] = await res.json();
  }
  return atlases[file];
}

let countryNumeric = null;
async function numericOf(country) {
  if (!countryNumeric) {
    countryNumeric = {};
    for (const c of (await api('GET', '/api/regions')).countries) countryNumeric[c.code] = c.numeric;
  }
  return countryNumeric[country];
}

async function regionNames(country) {
  if (state.names[country]) return state.names[country];
  const r = await api('GET', `/api/regions?country=${encodeURIComponent(country)}`);
  const byName = {};
  const byCode = {};
  for (const s of r.subdivisions || []) { byName[s.name] = s.code; byCode[s.code] = s.name; }
  state.names[country] = { byName, byCode };
  return state.names[country];
}

function classes(values) {
  const v = values.filter((x) => typeof x === 'number' && x > 0).sort((a, b) => a - b);
  if (!v.length) return [];
  const q = [0.2, 0.4, 0.6, 0.8].map((p) => v[Math.min(v.length - 1, Math.floor(p * v.length))]);
  return [...new Set(q)];
}
function colour(v, breaks) {
  if (v === 0) return PALETTE[0];
  let i = 0;
  while (i < breaks.length && v > breaks[i]) i++;
  return PALETTE[Math.min(PALETTE.length - 1, i + 1)];
}

async function drawMap(rel, f) {
  const box = $('#map');
  const last = rel.weeks.length - 1;
  $('#map-week').textContent = rel.weeks[last].week;
  const values = rel.regions.map((_, r) => valueOf(rel, last, r, f.condition));
  const breaks = classes(values);
  const names = await regionNames(rel.country);
  const width = 640, height = 400;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'map-svg');
  const defs = document.createElementNS(SVG, 'defs');
  const pat = document.createElementNS(SVG, 'pattern');
  pat.setAttribute('id', 'hatch'); pat.setAttribute('width', '6'); pat.setAttribute('height', '6');
  pat.setAttribute('patternUnits', 'userSpaceOnUse'); pat.setAttribute('patternTransform', 'rotate(45)');
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', '6'); bg.setAttribute('height', '6'); bg.setAttribute('fill', '#f3f0e8');
  const line = document.createElementNS(SVG, 'line');
  line.setAttribute('x1', '0'); line.setAttribute('y1', '0'); line.setAttribute('x2', '0'); line.setAttribute('y2', '6');
  line.setAttribute('stroke', '#a08c5b'); line.setAttribute('stroke-width', '2');
  pat.append(bg, line); defs.append(pat); svg.append(defs);

  if (rel.country === 'US') {
    const us = await atlas('states-10m.json');
    const states = topojson.feature(us, us.objects.states);
    const projection = d3.geoAlbersUsa().fitSize([width, height], states);
    const path = d3.geoPath(projection);
    for (const feature of states.features) {
      const code = names.byName[feature.properties.name];
      const r = code ? rel.regions.indexOf(code) : -1;
      const v = r >= 0 ? values[r] : undefined;
      const p = document.createElementNS(SVG, 'path');
      p.setAttribute('d', path(feature) || '');
      p.setAttribute('class', 'region');
      p.setAttribute('data-region', code || '');
      let label;
      if (v === undefined) { p.setAttribute('fill', '#e5e7eb'); label = 'no data'; }
      else if (v === null) { p.setAttribute('fill', 'url(#hatch)'); p.setAttribute('data-suppressed', ''); label = 'suppressed'; }
      else { p.setAttribute('fill', colour(v, breaks)); label = String(v); }
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${feature.properties.name}: ${label}`;
      p.append(title);
      if (code) p.addEventListener('click', () => { selectRegion(code, f); });
      svg.append(p);
    }
  } else {
    // Subdivision boundaries are bundled for the US only (us-atlas); any
    // other country is shaded whole on the world map (world-atlas), with its
    // total for the week; the chart, alerts and exports cover its regions.
    const world = await atlas('countries-110m.json');
    const countries = topojson.feature(world, world.objects.countries);
    const projection = d3.geoEqualEarth().fitSize([width, height], countries);
    const path = d3.geoPath(projection);
    const want = await numericOf(rel.country);
    const total = valueOf(rel, last, -1, f.condition);
    for (const feature of countries.features) {
      const p = document.createElementNS(SVG, 'path');
      p.setAttribute('d', path(feature) || '');
      const mine = want && String(feature.id).padStart(3, '0') === want;
      p.setAttribute('class', mine ? 'region' : 'country');
      if (mine) {
        p.setAttribute('data-region', rel.country);
        if (total === null) { p.setAttribute('fill', 'url(#hatch)'); p.setAttribute('data-suppressed', ''); }
        else p.setAttribute('fill', colour(total, classes([total])));
        const title = document.createElementNS(SVG, 'title');
        title.textContent = `${rel.country}: ${total === null ? 'suppressed' : total}`;
        p.append(title);
      } else {
        p.setAttribute('fill', '#e5e7eb');
      }
      svg.append(p);
    }
  }
  box.replaceChildren(svg);
  const legend = $('#map-legend');
  legend.replaceChildren(el('span', { class: 'legend-label' }, 'Count: '));
  const edges = [0, ...breaks];
  edges.forEach((b, i) => {
    const sw = el('span', { class: 'swatch' });
    sw.style.background = PALETTE[Math.min(PALETTE.length - 1, i + (i ? 1 : 0))];
    const hi = i + 1 < edges.length ? edges[i + 1] : null;
    legend.append(sw, i === 0 ? ' 0 ' : hi !== null ? ` ${b + 1}–${hi} ` : ` > ${b} `);
  });
}

// ---- chart ----
let plot = null;

function selectRegion(code, f) {
  state.region = code || null;
  $('#chart-select').value = code || '';
  drawChart(f).catch(showError);
}

function fillRegionSelect(rel, names) {
  const sel = $('#chart-select');
  sel.replaceChildren(el('option', { value: '' }, 'The whole country'),
    ...rel.regions.map((c) => el('option', { value: c }, names.byCode[c] ? `${names.byCode[c]} (${c})` : c)));
  sel.value = state.region || '';
}
// Charts are drawn by the filters (refresh) and by a click on the map or the
// region picker, each after a fetch: a slower earlier answer must not paint
// over a later one (the chart would show a filter no longer chosen), so only
// the newest request draws.
let chartSeq = 0;
async function drawChart(f) {
  const seq = ++chartSeq;
  const region = state.region || f.country;
  const names = await regionNames(f.country);
  const p = new URLSearchParams({ region, from: f.from, to: f.to, method: f.method });
  if (f.condition !== 'all') p.set('condition', f.condition);
  if (f.source) p.set('source', f.source);
  const s = await api('GET', `/api/surveil/series?${p}`);
  if (seq !== chartSeq) return;
  $('#chart-region').textContent = state.region ? `${names.byCode[region] || region} (${region})` : `${f.country} (all regions)`;
  const x = s.weeks.map((_, i) => i);
  const obs = s.observed.map((v) => (v === null ? null : v));
  const ub = s.upperbound.map((v) => (v === null ? null : v));
  const alarms = s.alarm.map((a, i) => (a ? (obs[i] ?? ub[i] ?? 0) : null));
  const box = $('#chart');
  if (plot) { plot.destroy(); plot = null; }
  const width = Math.max(320, box.clientWidth || 560);
  plot = new uPlot({
    width, height: 300,
    scales: { x: { time: false } },
    axes: [
      { values: (u, ticks) => ticks.map((t) => s.weeks[t] || '') },
      { label: 'count' },
    ],
    series: [
      { label: 'week', value: (u, v) => (v === null ? '' : s.weeks[v]) },
      { label: 'count', stroke: '#3182bd', fill: 'rgba(49,130,189,0.25)', paths: uPlot.paths.bars({ size: [0.7] }),
        value: (u, v, si, idx) => (idx === null || idx === undefined ? '--' : v === null ? 'suppressed' : v) },
      { label: `threshold (${s.method})`, stroke: '#444', dash: [6, 4], width: 1.5, spanGaps: false },
      { label: 'alarm', stroke: '#c0392b', width: 0, points: { show: true, size: 9, fill: '#c0392b' } },
    ],
  }, [x, obs, ub, alarms], box);
  const n = s.alarm.filter((a) => a === true).length;
  const weeks = s.weeks.filter((_, i) => s.alarm[i] === true);
  const summary = $('#chart-summary');
  summary.dataset.alarms = String(n);
  summary.dataset.region = region;
  summary.dataset.condition = f.condition;
  summary.dataset.source = s.source || '';
  summary.dataset.weeks = weeks.join(' ');
  summary.textContent = (n ? `${n} alarm${n > 1 ? 's' : ''} in this period: ${weeks.join(', ')}.` : 'No alarms in this period.')
    + (s.note ? ` ${s.note}.` : '') + (s.synthetic ? ' (synthetic data)' : '');
}

// ---- alerts ----
const ALERTS_SHOWN = 20;
async function loadAlerts(f, all = false) {
  const box = $('#alerts');
  // the alerts of the condition and weeks the filters show
  const everything = (await api('GET', '/api/surveil/alerts')).alerts
    .filter((a) => (f.condition === 'all' || a.condition === f.condition) && a.week >= f.from && a.week <= f.to);
  // open ones first (newest week first within each group)
  const sorted = [...everything.filter((a) => !a.acked_by), ...everything.filter((a) => a.acked_by)];
  const alerts = all ? sorted : sorted.slice(0, ALERTS_SHOWN);
  if (!alerts.length) { box.replaceChildren(el('p', { class: 'empty' }, 'No alerts for these filters.')); return; }
  const names = await regionNames(f.country);
  const table = el('table', { class: 'data-table', id: 'alerts-table' },
    el('thead', {}, el('tr', {}, ...['Week', 'Region', 'Condition', 'Method', 'Count', 'Threshold', 'Status']
      .map((h) => el('th', { scope: 'col' }, h)))));
  const body = el('tbody');
  for (const a of alerts) {
    const status = el('td');
    if (a.acked_by) status.append(`acknowledged by ${a.acked_by}`);
    else {
      const b = el('button', { type: 'button', class: 'button-small', 'data-alert': a.id }, 'Acknowledge');
      b.addEventListener('click', async () => {
        b.disabled = true;
        try { await api('POST', `/api/surveil/alerts/${a.id}/ack`, {}); await loadAlerts(f, all); } catch (e) { showError(e); b.disabled = false; }
      });
      status.append(b);
    }
    const row = el('tr', {},
      el('td', {}, a.week), el('td', {}, names.byCode[a.region] ? `${names.byCode[a.region]} (${a.region})` : a.region),
      el('td', {}, a.condition), el('td', {}, a.method),
      el('td', {}, a.observed === null ? `< ${state.overview.k}` : String(a.observed)),
      el('td', {}, a.upperbound.toFixed(1)), status);
    if (a.synthetic) row.classList.add('synthetic');
    body.append(row);
  }
  table.append(body);
  const open = everything.filter((a) => !a.acked_by).length;
  const head = el('p', { id: 'alerts-count' }, `${open} open of ${everything.length} alerts`
    + `${f.condition === 'all' ? '' : ` for ${f.condition}`} between ${f.from} and ${f.to}.`);
  const parts = [head, table];
  if (sorted.length > alerts.length) {
    const more = el('button', { type: 'button', class: 'button-secondary', id: 'alerts-all' }, `Show all ${sorted.length}`);
    more.addEventListener('click', () => loadAlerts(f, true).catch(showError));
    parts.push(more);
  }
  box.replaceChildren(...parts);
}

function showError(e) {
  message(e instanceof ApiError || e instanceof Error ? e.message : String(e));
}

// One refresh per submit of the filters; a newer one supersedes an older
// still waiting for the server. While one runs the page is marked
// aria-busy, which assistive technology announces and tests wait for.
let refreshSeq = 0;
async function refresh() {
  const seq = ++refreshSeq;
  const main = $('#main');
  main.setAttribute('aria-busy', 'true');
  try {
    await refreshView(seq);
  } finally {
    if (seq === refreshSeq) main.removeAttribute('aria-busy');
  }
}

async function refreshView(seq) {
  const f = filters();
  message('');
  const q = queryString(f);
  const rel = await api('GET', `/api/surveil/aggregates?${q}`);
  if (seq !== refreshSeq) return;
  state.release = rel;
  $('#synthetic-banner').hidden = !rel.synthetic;
  sourceNote(rel, f);
  const csv = $('#export-csv'), json = $('#export-json');
  const name = `caresync-${f.country}-${f.from}-${f.to}${f.source ? `-${f.source}` : ''}`;
  csv.href = `/api/surveil/aggregates?${q}&format=csv`;
  csv.setAttribute('download', `${name}.csv`);
  json.href = `/api/surveil/aggregates?${q}`;
  json.setAttribute('download', `${name}.json`);
  if (state.region && !rel.regions.includes(state.region)) state.region = null;
  const names = await regionNames(f.country);
  if (seq !== refreshSeq) return;
  fillRegionSelect(rel, names);
  $('#chart-select').onchange = (e) => selectRegion(e.target.value, f);
  await drawMap(rel, f);
  if (seq !== refreshSeq) return;
  await drawChart(f);
  if (seq !== refreshSeq) return;
  await loadAlerts(f);
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src} (run make deps)`));
    document.head.append(s);
  });
}

async function main() {
  const user = await startPage({ auth: 'required' });
  for (const lib of ['d3-array.min.js', 'd3-geo.min.js', 'topojson-client.min.js', 'uPlot.iife.min.js']) {
    await loadScript(`/vendor/${lib}`);
  }
  if (user.role !== 'analyst' && user.role !== 'admin') {
    $('#main').replaceChildren(el('h1', {}, 'Outbreak surveillance'),
      el('p', { class: 'notice', role: 'status' }, 'The surveillance dashboard is for analysts and administrators.'));
    return;
  }
  const ov = await api('GET', '/api/surveil/overview');
  state.overview = ov;
  for (const n of document.querySelectorAll('#k-value, .k-value')) n.textContent = String(ov.k);
  const f = $('#filters');
  const countries = ov.countries.length ? ov.countries : ['US'];
  f.country.replaceChildren(...countries.map((c) => el('option', { value: c }, c)));
  for (const c of ov.conditions) f.condition.append(el('option', { value: c.code }, c.name));
  // Only closed weeks are released (a day after they end): half a year up to
  // the latest one. The server counts the weeks back (ISO years of 52 or 53
  // weeks); this page does no week arithmetic of its own.
  const period = await api('GET', `/api/surveil/weeks?to=${encodeURIComponent(ov.latest_week)}&count=26`);
  f.to.value = period.to;
  f.from.value = period.from;
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    refresh().catch(showError);
  });
  if (!ov.extent) message(`No data released yet. A week's counts are released ${Math.round(ov.seal_delay_s / 3600)} hours after it ends (the latest released week is ${ov.latest_week}). On a test instance, \`caresync demo-data\` adds a synthetic year.`, 'info');
  await refresh();
}

main().catch(showError);
