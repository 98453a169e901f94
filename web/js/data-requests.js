// Data requests (issue 14): the open requests that match the person's
// record, each with who asks, why (in words and as a purpose code), the
// payment, closing date, places left and a preview of exactly the rows that
// would leave the record (the server's own rows, not rebuilt here); accept
// (an inline confirmation: a consent on the public ledger under the wallet,
// paid from the request's escrow) or decline; the daily earning cap; and the
// requests the person took part in, with a withdrawal (revoking the consent).
//
// Declining tells nobody: the server keeps no list of who matched, so a
// declined request is only hidden in this browser (localStorage, per user),
// and can be shown again.
import { api } from './api.js';
import { $, el } from './dom.js';
import { showStaffNotice, startPage } from './layout.js';
import { facts } from './market-ui.js';
import {
  confirmAndHold, dateFromIso, purposeLabel, receiptNote, scopeText, shortHex, tokens, txLink,
} from './ledger-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#market-page');
const pageMessage = $('#page-message');
const capStatus = $('#cap-status');
const openList = $('#open-list');
const openStatus = $('#open-status');
const declinedActions = $('#declined-actions');
const showDeclined = $('#show-declined');
const tookList = $('#took-list');
const tookStatus = $('#took-status');
const tookMessage = $('#took-message');

const COLUMNS = [['category', 'Kind'], ['code', 'Code'], ['week', 'Week'], ['age_band', 'Age band'], ['sex', 'Sex'],
  ['region', 'Region']];
const ROW_CATEGORY = { conditions: 'Condition', symptoms: 'Symptom', screening: 'Skin check result', demographics: 'About you' };
const SEX_LABEL = { female: 'Female', male: 'Male', intersex: 'Intersex', unspecified: 'Unspecified' };
const STATE_LABEL = { open: 'Open', closed: 'Closed', withdrawn: 'Withdrawn by the organisation', closing: 'Closing' };

let data = { requests: [], participations: [], daily_cap: null };
let conditionNames = new Map();
let showingDeclined = false;

// ---- declined requests: this browser only ----

const DECLINED_KEY = `caresync.declined.${user ? user.username : ''}`;

function declinedIds() {
  try {
    const v = JSON.parse(localStorage.getItem(DECLINED_KEY) || '[]');
    return new Set(Array.isArray(v) ? v : []);
  } catch {
    return new Set();
  }
}

function saveDeclined(ids) {
  try { localStorage.setItem(DECLINED_KEY, JSON.stringify([...ids])); } catch { /* storage off: shown again next time */ }
}

// ---- messages ----

function say(node, text, ok = false, ...extra) {
  node.classList.toggle('is-ok', ok);
  node.replaceChildren(text, ...extra);
}

function handle(err, where) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (err.code === 'forbidden') {
    showStaffNotice(page, user, 'Data requests');
    return;
  }
  say(where, err.message);
}

// ---- one open request ----

function cell(key, row) {
  const v = row[key];
  if (v === undefined || v === null) return '—';
  if (key === 'category') return ROW_CATEGORY[v] || v;
  if (key === 'code') return conditionNames.has(v) ? `${conditionNames.get(v)} (${v})` : v;
  if (key === 'sex') return SEX_LABEL[v] || v;
  return String(v);
}

// The rows exactly as the server listed them, in a table with only the
// columns they hold.
function previewTable(r) {
  const rows = Array.isArray(r.preview) ? r.preview : [];
  const cols = COLUMNS.filter(([key]) => rows.some((row) => row[key] !== undefined));
  return el('table', { class: 'data-table preview-rows' },
    el('caption', {}, `${r.accepted ? 'What you shared' : 'Exactly what would leave your record'}: `
      + `${rows.length} ${rows.length === 1 ? 'row' : 'rows'}`),
    el('thead', {}, el('tr', {}, ...cols.map(([, label]) => el('th', { scope: 'col' }, label)))),
    el('tbody', {}, ...rows.map((row) => el('tr', {},
      ...cols.map(([key, label]) => el('td', { 'data-label': label, 'data-key': key }, cell(key, row)))))));
}

function orgText(o) {
  return [el('strong', {}, o.name), ' ', el('code', { class: 'hex hex-short', title: o.key }, shortHex(o.key))];
}

function requestItem(r, declined) {
  const li = el('li', { class: 'record market-request', 'data-id': r.id });
  const headingId = `req-${r.id}-title`;
  li.append(
    el('div', { class: 'record-head' },
      el('span', { class: 'tag' }, r.accepted ? 'You took part' : declined ? 'Declined' : tokens(r.price)),
      el('h3', { class: 'record-title', id: headingId }, r.title)),
    facts(
      ['Organisation', ...orgText(r.organisation)],
      ['Purpose', `${purposeLabel(r.purpose)} `, el('code', { class: 'purpose-code' }, r.purpose)],
      ['In their words', el('span', { class: 'record-details purpose-text' }, r.purpose_text)],
      ['What they ask for', scopeText(r.categories)],
      ['Payment', el('span', { class: 'price' }, tokens(r.price)), ' to you, once'],
      ['Closes', dateFromIso(r.closes)],
      ['Places left', el('span', { class: 'places-left' }, `${r.places_left} of ${r.max_participants}`)]),
    previewTable(r));
  if (r.accepted) return li;
  if (r.daily_cap && r.daily_cap.applies) {
    li.append(el('p', { class: 'notice notice-warning cap-applies' }, `Accepting would take you over today’s earning `
      + `limit of ${tokens(r.daily_cap.cap)} (you have earned ${tokens(r.daily_cap.earned_today)} today). `
      + 'The limit starts again at midnight UTC.'));
  }
  const actions = el('div', { class: 'record-actions' });
  const acceptButton = el('button', {
    type: 'button', class: 'button-small accept-button', 'aria-describedby': headingId,
    disabled: Boolean(r.daily_cap && r.daily_cap.applies),
  }, `Accept (${tokens(r.price)})`);
  acceptButton.addEventListener('click', () => accept(r, actions));
  actions.append(acceptButton);
  const declineButton = el('button', { type: 'button', class: 'button-secondary button-small decline-button', 'aria-describedby': headingId },
    declined ? 'Show it again' : 'Decline');
  declineButton.addEventListener('click', () => decline(r, declined));
  actions.append(declineButton);
  li.append(actions);
  return li;
}

async function accept(r, actions) {
  say(pageMessage, '');
  const n = Array.isArray(r.preview) ? r.preview.length : 0;
  const button = await confirmAndHold(actions, {
    question: `Share the ${n} ${n === 1 ? 'row' : 'rows'} above with ${r.organisation.name}? A consent to them goes on `
      + 'the public ledger under your wallet, without your name, and you are paid '
      + `${tokens(r.price)} from the tokens they set aside. You can withdraw later.`,
    yes: `Yes, share and get ${tokens(r.price)}`,
    no: 'Not now',
    label: `Confirm accepting “${r.title}”`,
    danger: false,
  }, '.accept-button');
  if (!button) return;
  try {
    const done = await api('POST', `/api/market/requests/${encodeURIComponent(r.id)}/accept`, {});
    await load();
    say(pageMessage, `You shared ${done.rows} ${done.rows === 1 ? 'row' : 'rows'} with ${r.organisation.name} and were paid `
      + `${tokens(done.paid)}. Payment: `, true, txLink(done.payment_txid, { label: 'Payment transaction' }), '; consent: ',
    txLink(done.grant_txid, { label: 'Consent transaction' }), '.');
    $('#took-heading').focus();
  } catch (err) {
    button.disabled = false;
    if (err.code === 'unauthenticated' || err.code === 'forbidden') {
      handle(err, pageMessage);
      return;
    }
    // Filled, closed, already taken part or over the cap meanwhile: say
    // why, and show the list as it now is.
    await load().catch(() => {});
    say(pageMessage, err.message);
    pageMessage.scrollIntoView({ block: 'nearest' });
  }
}

function decline(r, wasDeclined) {
  const ids = declinedIds();
  if (wasDeclined) ids.delete(r.id); else ids.add(r.id);
  saveDeclined(ids);
  render();
  say(pageMessage, wasDeclined ? `“${r.title}” is back in your list.`
    : `Declined “${r.title}”. Nobody is told: it is only hidden in this browser.`, true);
  $('#open-heading').focus();
}

// ---- requests taken part in ----

function tookItem(t) {
  const li = el('li', { class: `record consent participation${t.withdrawn_at ? ' consent-revoked' : ''}`, 'data-request': t.request });
  li.append(
    el('div', { class: 'record-head' },
      el('span', { class: `tag ${t.withdrawn_at ? 'status-revoked' : 'status-active'}` }, t.withdrawn_at ? 'Withdrawn' : 'Sharing'),
      el('h3', { class: 'record-title' }, t.title)),
    facts(
      ['Organisation', ...orgText(t.organisation)],
      ['Purpose', `${purposeLabel(t.purpose)} `, el('code', { class: 'purpose-code' }, t.purpose)],
      ['Paid to you', el('span', { class: 'paid' }, tokens(t.paid)), ' on ', dateFromIso(t.paid_at)],
      ['Request', STATE_LABEL[t.state] || t.state],
      ['Consent', txLink(t.grant_txid, { label: 'Consent transaction' })]));
  if (t.withdrawn_at) {
    li.append(el('p', { class: 'withdrawn-note' }, 'Withdrawn on ', dateFromIso(t.withdrawn_at), ': your rows are left out '
      + `of every later delivery. The ${tokens(t.paid)} stay yours.`));
    return li;
  }
  const actions = el('div', { class: 'record-actions' });
  const button = el('button', { type: 'button', class: 'button-secondary button-small withdraw-button' }, 'Withdraw');
  button.addEventListener('click', () => withdraw(t, actions));
  actions.append(button);
  li.append(actions);
  return li;
}

async function withdraw(t, actions) {
  say(tookMessage, '');
  const button = await confirmAndHold(actions, {
    question: `Withdraw from “${t.title}”? Your consent is revoked on the ledger and your rows are removed from every `
      + `later delivery to ${t.organisation.name} (a delivery already made cannot be called back). `
      + `The ${tokens(t.paid)} you were paid stay yours.`,
    yes: 'Yes, withdraw',
    no: 'Keep sharing',
    label: `Confirm withdrawing from “${t.title}”`,
  });
  if (!button) return;
  try {
    const done = await api('POST', `/api/consents/${encodeURIComponent(t.grant_txid)}/revoke`);
    await load();
    const note = receiptNote(done.receipt, `Withdrawn from “${t.title}”: your rows are out of every later delivery; `
      + `the ${tokens(t.paid)} stay yours.`);
    say(tookMessage, '', true, ...note.childNodes);
    $('#took-heading').focus();
  } catch (err) {
    button.disabled = false;
    handle(err, tookMessage);
  }
}

// ---- the page ----

function render() {
  const declined = declinedIds();
  const requests = Array.isArray(data.requests) ? data.requests : [];
  const hidden = requests.filter((r) => !r.accepted && declined.has(r.id));
  const shown = requests.filter((r) => r.accepted || !declined.has(r.id) || showingDeclined);
  openList.replaceChildren(...shown.map((r) => requestItem(r, !r.accepted && declined.has(r.id))));
  openStatus.textContent = shown.length ? `${shown.length} ${shown.length === 1 ? 'request' : 'requests'}`
    : hidden.length ? 'You declined every open request that matches you.'
      : 'No open request matches your record at the moment. Requests match on coded conditions and symptoms, your age band and region (see your Records and Profile).';
  declinedActions.hidden = !hidden.length;
  showDeclined.textContent = showingDeclined ? 'Hide declined requests' : `Show declined requests (${hidden.length})`;
  showDeclined.setAttribute('aria-pressed', String(showingDeclined));

  const cap = data.daily_cap;
  capStatus.textContent = cap ? `Today you have earned ${tokens(cap.earned_today)} from data requests, of a daily `
    + `limit of ${tokens(cap.cap)} (it starts again at midnight UTC).` : '';

  const took = Array.isArray(data.participations) ? data.participations : [];
  tookList.replaceChildren(...took.map(tookItem));
  tookStatus.textContent = took.length ? '' : 'You have not taken part in any data request yet.';
}

async function load() {
  const [list, cond] = await Promise.all([
    api('GET', '/api/market/requests'),
    conditionNames.size ? null : api('GET', '/api/review/conditions').catch(() => null),
  ]);
  if (cond) conditionNames = new Map((cond.conditions || []).map((c) => [c.code, c.name]));
  data = list;
  render();
}

showDeclined.addEventListener('click', () => {
  showingDeclined = !showingDeclined;
  render();
});

if (user && user.role !== 'person') {
  // Staff keep no record, so nothing can match them; the API would say 403.
  page.hidden = false;
  showStaffNotice(page, user, 'Data requests');
} else {
  try {
    page.hidden = false;
    openStatus.textContent = 'Matching the open requests with your record…';
    await load();
  } catch (err) {
    openStatus.textContent = '';
    handle(err, pageMessage);
  }
}
