// The organisation's own page (issue 14): an analyst an administrator put in
// an organisation posts data requests for it, sees its credit and the total
// each request will hold in escrow, follows its requests (waiting for
// approval / open / closed, places taken and left, escrow left), downloads
// each dataset (CSV, JSON, or the data dictionary alone) with what the
// k-anonymity step held back, and withdraws a request. The /api/org routes
// are the token API's handlers with the organisation taken from the session.
import { ApiError, api } from './api.js';
import { $, el, today } from './dom.js';
import { startPage } from './layout.js';
import { criteriaText, facts, handle } from './market-ui.js';
import { clearErrors, showOk, submitting, validate, value } from './forms.js';
import {
  confirmAndHold, dateFromIso, purposeLabel, scopeText, shortHex, tokens, txLink,
} from './ledger-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#org-page');
const form = $('#post-form');
const escrowTotal = $('#escrow-total');
const list = $('#request-list');
const listStatus = $('#list-status');
const listMessage = $('#list-message');

const STATE_LABEL = {
  pending: 'Waiting for approval', funding: 'Being funded', open: 'Open', closing: 'Closing', closed: 'Closed',
  withdrawn: 'Withdrawn',
};
const AGE_BANDS = [...Array.from({ length: 20 }, (_, i) => `${i * 5}-${i * 5 + 4}`), '100+'];
const COUNTRY = /^[A-Za-z]{2}$/;

let balance = null;
let requests = [];
const deliveries = new Map(); // request id -> what the last download said

function checkbox(name, val, label) {
  const id = `${name}-${val.replace(/[^a-z0-9]/gi, '_')}`;
  return el('div', { class: 'check' }, el('input', { type: 'checkbox', id, name, value: val }), el('label', { for: id }, label));
}

const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

function countries() {
  return value(form, 'countries').split(',').map((s) => s.trim()).filter(Boolean).map((s) => s.toUpperCase());
}

// ---- the total a request needs, against the credit ----

function showTotal() {
  const price = Number(value(form, 'price'));
  const places = Number(value(form, 'max_participants'));
  if (!Number.isInteger(price) || !Number.isInteger(places) || price < 1 || places < 1) {
    escrowTotal.classList.remove('notice-warning');
    escrowTotal.textContent = balance === null ? '' : `Your organisation’s credit: ${tokens(balance)}.`;
    return;
  }
  const total = price * places;
  const short = balance !== null && total > balance;
  escrowTotal.classList.toggle('notice-warning', short);
  escrowTotal.textContent = `Escrow needed: ${tokens(price)} × ${places} ${places === 1 ? 'place' : 'places'} = ${tokens(total)}, `
    + `held on the ledger when an administrator approves. Your organisation’s credit: ${tokens(balance ?? 0)}.`
    + (short ? ' That is not enough: ask CareSync for a credit first.' : '');
  escrowTotal.dataset.total = String(total);
}

// ---- downloads ----

// One dataset from the server as a file; what its headers or summary say
// about the delivery is kept for the request's line.
async function fetchDataset(r, format) {
  let res;
  try {
    res = await fetch(`/api/org/requests/${encodeURIComponent(r.id)}/dataset?format=${format}`, {
      credentials: 'same-origin', cache: 'no-store', headers: { Accept: format === 'csv' ? 'text/csv' : 'application/json' },
    });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach CareSync. Check your connection and try again.');
  }
  if (!res.ok) {
    let e = {};
    try { e = (await res.json()).error || {}; } catch { /* not JSON */ }
    throw new ApiError(res.status, e.code || `http_${res.status}`, e.message || `The server answered ${res.status}.`, e.field || null);
  }
  if (format === 'csv') {
    const counts = Object.fromEntries((res.headers.get('X-Rows') || '').split(',')
      .map((p) => p.trim().split('=')).filter((p) => p.length === 2).map(([k, v]) => [k, Number(v)]));
    return {
      blob: await res.blob(),
      summary: { rows_in: counts.in, delivered: counts.delivered, held_back: counts.held_back },
      k: Number(res.headers.get('X-K')),
      txid: res.headers.get('X-Ledger-Txid'),
      repeat: res.headers.get('X-Repeat') === 'true',
    };
  }
  const doc = await res.json();
  return { doc, summary: doc.summary, k: doc.k, txid: doc.receipt && doc.receipt.txid, repeat: doc.receipt && doc.receipt.repeat };
}

function saveFile(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own copy by now; a minute is ample.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

const FILE = { csv: 'dataset', json: 'dataset', dictionary: 'dictionary' };

async function download(r, kind, button) {
  listMessage.textContent = '';
  button.disabled = true;
  try {
    const got = await fetchDataset(r, kind === 'csv' ? 'csv' : 'json');
    const name = `${FILE[kind]}-${r.id}.${kind === 'csv' ? 'csv' : 'json'}`;
    if (kind === 'csv') saveFile(name, got.blob);
    else {
      const body = kind === 'json' ? got.doc : { format: got.doc.format, k: got.doc.k, dictionary: got.doc.dictionary };
      saveFile(name, new Blob([`${JSON.stringify(body, null, 2)}\n`], { type: 'application/json' }));
    }
    deliveries.set(r.id, got);
    render();
    const line = list.querySelector(`li[data-id="${r.id}"] .delivery-summary`);
    if (line) line.focus();
  } catch (err) {
    handle(err, listMessage);
  } finally {
    button.disabled = false;
  }
}

function deliveryLine(r) {
  const d = deliveries.get(r.id);
  if (!d) return null;
  const s = d.summary || {};
  const n = (v, one, many) => `${v} ${v === 1 ? one : many}`;
  return el('p', {
    class: 'notice delivery-summary', tabindex: '-1', role: 'status', 'data-delivered': String(s.delivered),
    'data-held-back': String(s.held_back), 'data-rows-in': String(s.rows_in),
  },
  `Downloaded: ${n(s.delivered, 'row', 'rows')} delivered of ${s.rows_in}; `,
  el('strong', { class: 'held-back' }, `${n(s.held_back, 'row', 'rows')} held back`),
  ` by the k-anonymity check (k = ${d.k}: rows that would stand out among fewer than ${d.k} people are made coarser, `
    + 'or held back). ', d.repeat ? 'The same dataset as before: release ' : 'Recorded on the ledger as release ',
  txLink(d.txid, { label: 'Release transaction' }), '.');
}

// ---- the list ----

function requestItem(r) {
  const li = el('li', { class: `record market-request state-${r.state}`, 'data-id': r.id, 'data-state': r.state });
  const headingId = `req-${r.id}-title`;
  const total = r.price * r.max_participants;
  const taken = r.paid || 0;
  li.append(
    el('div', { class: 'record-head' },
      el('span', { class: 'tag request-state' }, STATE_LABEL[r.state] || r.state),
      el('h3', { class: 'record-title', id: headingId }, r.title)),
    facts(
      ['Purpose', `${purposeLabel(r.purpose)} `, el('code', {}, r.purpose)],
      ['In your words', el('span', { class: 'record-details' }, r.purpose_text)],
      ['Asks for', scopeText(r.categories)],
      ['Who matches', criteriaText(r.criteria)],
      ['Payment', `${tokens(r.price)} × ${r.max_participants} = `, el('strong', { class: 'total' }, tokens(total))],
      ['Places', el('span', { class: 'places' }, `${taken} taken, ${r.max_participants - taken} left`)],
      r.escrow_txid ? ['Escrow left', el('span', { class: 'escrow-left' }, tokens(r.remaining ?? 0)), ' · funded by ',
        txLink(r.escrow_txid, { label: 'Funding transaction' })] : ['Escrow', 'Nothing held until an administrator approves'],
      ['Closes', dateFromIso(r.closes)],
      ['Posted', dateFromIso(r.created_at)]));
  const actions = el('div', { class: 'record-actions' });
  if (r.escrow_txid) {
    for (const [kind, label] of [['csv', 'Download CSV'], ['json', 'Download JSON'], ['dictionary', 'Data dictionary']]) {
      const b = el('button', { type: 'button', class: `button-secondary button-small download-${kind}`, 'aria-describedby': headingId }, label);
      b.addEventListener('click', () => download(r, kind, b));
      actions.append(b);
    }
  }
  if (r.state === 'pending' || r.state === 'open') {
    const w = el('button', { type: 'button', class: 'button-secondary button-small withdraw-button', 'aria-describedby': headingId }, 'Withdraw');
    w.addEventListener('click', () => withdraw(r, actions));
    actions.append(w);
  }
  if (actions.childNodes.length) li.append(actions);
  const line = deliveryLine(r);
  if (line) li.append(line);
  return li;
}

async function withdraw(r, actions) {
  listMessage.textContent = '';
  const left = r.escrow_txid ? r.remaining ?? 0 : 0;
  const button = await confirmAndHold(actions, {
    question: r.state === 'pending'
      ? `Withdraw “${r.title}”? It will not be approved or shown to anyone.`
      : `Withdraw “${r.title}”? It closes now: nobody else can take part, and the ${tokens(left)} left in escrow return `
        + 'to your credit. People already paid stay paid, and their rows stay in your downloads until they withdraw.',
    yes: 'Yes, withdraw',
    no: 'Keep it',
    label: `Confirm withdrawing “${r.title}”`,
  }, '.withdraw-button');
  if (!button) return;
  try {
    await api('POST', `/api/org/requests/${encodeURIComponent(r.id)}/withdraw`, {});
    await load();
    listMessage.classList.add('is-ok');
    listMessage.textContent = `Withdrew “${r.title}”.${left ? ` ${tokens(left)} returned to your credit.` : ''}`;
    $('#list-heading').focus();
  } catch (err) {
    button.disabled = false;
    handle(err, listMessage);
  }
}

function render() {
  list.replaceChildren(...requests.map(requestItem));
  listStatus.textContent = requests.length ? `${requests.length} ${requests.length === 1 ? 'request' : 'requests'}`
    : 'Your organisation has posted no data request yet.';
  $('#org-balance').textContent = balance === null ? '…' : tokens(balance);
  showTotal();
}

async function load() {
  const data = await api('GET', '/api/org/requests');
  requests = Array.isArray(data.requests) ? data.requests : [];
  balance = data.balance;
  render();
}

async function loadOrg() {
  const [credit, cond] = await Promise.all([
    api('GET', '/api/org/credit'),
    api('GET', '/api/review/conditions').catch(() => ({ conditions: [] })),
  ]);
  const o = credit.organisation;
  $('#org-name').replaceChildren(el('strong', {}, o.name), ' ', el('code', { class: 'hex hex-short', title: o.key }, shortHex(o.key)));
  balance = credit.balance;
  $('#condition-choices').replaceChildren(...(cond.conditions || []).map((c) => checkbox('condition', c.code, `${c.name} (${c.code})`)));
}

// ---- posting ----

const rules = [
  (f) => (f.querySelectorAll('input[name="category"]:checked').length === 0
    ? { field: 'categories', message: 'Choose at least one kind of data to ask for.' } : null),
  () => (countries().every((c) => COUNTRY.test(c)) ? null
    : { field: 'countries', message: 'Enter two-letter country codes separated by commas, for example NZ, AU.' }),
  (f) => (value(f, 'closes') && value(f, 'closes') <= today()
    ? { field: 'closes', message: 'Choose a closing date after today.' } : null),
];

form.addEventListener('input', (event) => {
  if (event.target.name === 'price' || event.target.name === 'max_participants') showTotal();
});

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(form, rules)) return;
  const criteria = {};
  if (checked('condition').length) criteria.conditions = checked('condition');
  if (countries().length) criteria.countries = countries();
  if (checked('age_band').length) criteria.age_bands = checked('age_band');
  const body = {
    title: value(form, 'title').trim(),
    purpose_text: value(form, 'purpose_text').trim(),
    purpose: form.querySelector('input[name="purpose"]:checked').value,
    categories: checked('category'),
    criteria,
    price: Number(value(form, 'price')),
    max_participants: Number(value(form, 'max_participants')),
    closes: `${value(form, 'closes')}T23:59:59Z`,
  };
  submitting(form, async () => {
    const done = await api('POST', '/api/org/requests', body);
    form.reset();
    clearErrors(form);
    await load();
    showOk(form, `Posted “${done.request.title}”. It waits for an administrator’s approval; approving holds `
      + `${tokens(done.request.price * done.request.max_participants)} in escrow, and then matching people see it.`);
  }, {
    describe: (err) => (err.code === 'insufficient_tokens'
      ? `${err.message} Ask CareSync for a credit, or ask for fewer places or tokens.` : err.message),
  });
});

page.hidden = false;
if (!user || user.role !== 'analyst' || !user.organisation) {
  page.replaceChildren(el('div', { class: 'notice', role: 'status', id: 'org-notice' },
    el('h2', {}, 'This page is for members of an organisation'),
    el('p', {}, `You are signed in as ${user ? user.username : 'someone else'}. Analysts whom an administrator has added `
      + 'to their organisation post and follow its data requests here. ',
    user && user.role === 'person' ? el('a', { href: '/data-requests' }, 'See the data requests open to you') : null)));
} else {
  $('#age-band-choices').replaceChildren(...AGE_BANDS.map((b) => checkbox('age_band', b, b)));
  $('#post-closes').setAttribute('min', today());
  try {
    listStatus.textContent = 'Loading…';
    await loadOrg();
    await load();
  } catch (err) {
    listStatus.textContent = '';
    handle(err, listMessage);
  }
}
