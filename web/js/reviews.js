// The person's clinician reviews: ask for one (a saved skin check with its
// photo, an organisation's offer, optional extras, and a preview of exactly
// what the case copy holds), then follow the requests: state, due time,
// withdraw while waiting, the clinician's answer beside the screening's
// result, and who opened the case when.
import { api } from './api.js';
import { $, el } from './dom.js';
import { showStaffNotice, startPage } from './layout.js';
import { clearErrors, showError, showOk, submitting, validate, value } from './forms.js';
import { confirmInline, shortHex, tokens, txLink } from './ledger-ui.js';
import { STATE_LABEL, URGENCY_LABEL, casePhoto, extrasEl, when } from './review-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#reviews-page');
const pageMessage = $('#page-message');
const form = $('#ask-form');
const askMessage = $('#ask-message');
const recordSelect = $('#ask-record');
const offerList = $('#offer-list');
const offerStatus = $('#offer-status');
const list = $('#request-list');
const listStatus = $('#requests-status');
const listForm = $('#requests-message').parentElement;

const EXTRAS = ['age_band', 'sex', 'body_site', 'duration', 'note'];
let records = []; // entries with a photo
let offers = [];
const orgNames = new Map(); // organisation key → name, from the offers
let conditionNames = new Map();
let requests = [];
const open = new Set(); // request ids whose details are shown

const orgName = (key) => orgNames.get(key) || `Organisation ${shortHex(key)}`;

function chosenOffer() {
  const picked = form.querySelector('input[name="org"]:checked');
  return picked ? offers.find((o) => o.organisation.key === picked.value) : null;
}

function chosenRecord() {
  return records.find((r) => r.id === recordSelect.value) || null;
}

function shareOf() {
  const share = {};
  for (const name of EXTRAS) {
    const v = value(form, name).trim();
    if (v) share[name] = v;
  }
  return share;
}

// The preview is built from the same values the request sends: the saved
// photo (already the 224 px copy), the entry's title and details (the
// screening's result in words) and the chosen extras.
function renderPreview() {
  const r = chosenRecord();
  const img = $('#preview-photo');
  if (r) {
    const src = `/api/records/${encodeURIComponent(r.id)}/photo`;
    if (img.getAttribute('src') !== src) img.src = src;
    img.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute('src');
  }
  $('#preview-title').textContent = r ? r.title : 'Choose a saved skin check.';
  $('#preview-details').textContent = r && r.details ? r.details : '';
  $('#preview-extras').replaceWith(Object.assign(extrasEl(shareOf()), { id: 'preview-extras' }));
  const o = chosenOffer();
  // A live region: only a change of offer is announced, not every keystroke.
  const cost = o
    ? `${o.organisation.name} answers within ${o.answer_hours} ${o.answer_hours === 1 ? 'hour' : 'hours'}. `
      + `${tokens(o.price)} will be held from your wallet now, paid to them only when a clinician answers, `
      + 'and given back if you withdraw, they return the case, or nobody answers in time.'
    : 'Choose an organisation to see the price.';
  if ($('#preview-cost').textContent !== cost) $('#preview-cost').textContent = cost;
  $('#ask-submit').textContent = o ? `Send for review (${tokens(o.price)})` : 'Send for review';
}

function renderRecords(want) {
  const keep = want || recordSelect.value;
  recordSelect.replaceChildren(...records.map((r) => el('option', { value: r.id }, `${r.title} (${(r.created_at || r.updated_at || '').slice(0, 10)})`)));
  if (!records.length) {
    recordSelect.append(el('option', { value: '' }, 'No saved skin check with a photo yet'));
    recordSelect.disabled = true;
  } else {
    recordSelect.disabled = false;
    if (keep && records.some((r) => r.id === keep)) recordSelect.value = keep;
  }
}

function renderOffers() {
  const keep = chosenOffer()?.organisation.key;
  offerList.replaceChildren(...offers.map((o, i) => {
    const id = `offer-${i}`;
    const covers = o.conditions.map((c) => conditionNames.get(c) || c).join(', ');
    return el('div', { class: 'check offer' },
      el('input', { type: 'radio', name: 'org', id, value: o.organisation.key, 'aria-describedby': `${id}-covers` }),
      el('label', { for: id }, el('strong', {}, o.organisation.name), ` — ${tokens(o.price)}, answers within `
        + `${o.answer_hours} ${o.answer_hours === 1 ? 'hour' : 'hours'}`),
      el('span', { class: 'hint', id: `${id}-covers` }, `Reviews: ${covers}`));
  }));
  if (keep) {
    const again = offerList.querySelector(`input[value="${CSS.escape(keep)}"]`);
    if (again) again.checked = true;
  }
  offerStatus.textContent = offers.length ? '' : 'No organisation offers clinician review at the moment.';
}

async function loadOffers() {
  const data = await api('GET', '/api/review/offers');
  offers = Array.isArray(data.offers) ? data.offers : [];
  for (const o of offers) orgNames.set(o.organisation.key, o.organisation.name);
  renderOffers();
}

async function loadRecords() {
  const data = await api('GET', '/api/records');
  records = (Array.isArray(data.records) ? data.records : []).filter((r) => r.photo);
}

// ---- the requests ----

function factsOf(q) {
  const dl = el('dl', { class: 'facts' });
  const add = (term, ...def) => dl.append(el('dt', {}, term), el('dd', {}, ...def));
  add('Price', tokens(q.price));
  add('Asked', when(q.created_at));
  if (q.state === 'waiting') add('Answer due by', when(q.answer_due));
  if (q.closed_at) add('Closed', when(q.closed_at));
  if (q.reason) add('Reason given', q.reason);
  return dl;
}

// The screening's result and the clinician's answer side by side.
function detailsOf(q) {
  const box = el('div', { class: 'review-details', id: `details-${q.id}` });
  const c = q.case;
  const model = el('section', { class: 'review-side', 'aria-label': 'What the screening said' },
    el('h4', {}, 'What the screening said'));
  if (c) {
    if (c.photo_jpeg_base64url) model.append(casePhoto(c.photo_jpeg_base64url, 'The photo you shared'));
    model.append(el('p', { class: 'preview-title model-title' }, c.result?.title || ''));
    if (c.result?.details) model.append(el('p', { class: 'preview-details model-details' }, c.result.details));
    model.append(el('h5', {}, 'Extras you shared'), extrasEl(c.share));
  } else {
    model.append(el('p', { class: 'empty' }, 'The case copy has been destroyed (nothing of it is kept).'));
  }
  const clinician = el('section', { class: 'review-side', 'aria-label': 'What the clinician said' },
    el('h4', {}, 'What the clinician said'));
  const a = q.answer;
  if (a) {
    const cond = a.condition === 'other' ? (a.other || 'Other') : (conditionNames.get(a.condition) || a.condition);
    const dl = el('dl', { class: 'facts answer-facts' });
    dl.append(el('dt', {}, 'Condition'), el('dd', { class: 'answer-condition', 'data-code': a.condition }, cond),
      el('dt', {}, 'Urgency'), el('dd', { class: 'answer-urgency', 'data-code': a.urgency }, URGENCY_LABEL[a.urgency] || a.urgency),
      el('dt', {}, 'Advice'), el('dd', { class: 'answer-advice' }, a.advice),
      el('dt', {}, 'Clinician'), el('dd', { class: 'answer-clinician' }, a.clinician));
    clinician.append(dl);
  } else {
    clinician.append(el('p', { class: 'empty' }, q.state === 'waiting' ? 'No answer yet.' : `No answer: ${STATE_LABEL[q.state] || q.state}.`));
  }
  const openings = Array.isArray(q.openings) ? q.openings : [];
  const who = el('section', { class: 'review-openings', 'aria-label': 'Who opened your case' },
    el('h4', {}, 'Who opened your case'),
    openings.length
      ? el('ul', { class: 'opening-list' }, ...openings.map((o) => el('li', {}, `${o.clinician}, `, when(o.opened_at))))
      : el('p', { class: 'empty' }, 'Nobody has opened it yet.'));
  // What becomes of a coded answer for public health (the person's vault
  // says; null when it is not contributed).
  const shared = q.contribution && el('p', { class: 'review-contribution', 'data-status': q.contribution.status,
    'data-reason': q.contribution.reason || '' }, el('strong', {}, 'Public health: '), q.contribution.message);
  const ledger = el('p', { class: 'review-ledger' }, 'On the ledger: request ', txLink(q.request_txid));
  if (q.close_txid) ledger.append(q.state === 'answered' ? ', payment ' : ', refund ', txLink(q.close_txid));
  box.append(el('div', { class: 'review-compare' }, model, clinician), who);
  if (shared) box.append(shared);
  box.append(ledger);
  return box;
}

function requestItem(q) {
  const li = el('li', { class: `record review-request state-${q.state}`, id: `request-${q.id}`, 'data-id': q.id,
    'data-state': q.state, tabindex: '-1' });
  li.append(el('div', { class: 'record-head' },
    el('span', { class: `tag review-state status-${q.state}` }, STATE_LABEL[q.state] || q.state),
    el('h3', { class: 'record-title' }, `Review by ${orgName(q.organisation.key)}`)), factsOf(q));
  const actions = el('div', { class: 'record-actions' });
  const toggle = el('button', { type: 'button', class: 'button-secondary button-small details-toggle',
    'aria-expanded': open.has(q.id) ? 'true' : 'false', 'aria-controls': `details-${q.id}` },
  open.has(q.id) ? 'Hide details' : 'Show details');
  toggle.addEventListener('click', () => toggleDetails(q, li, toggle));
  actions.append(toggle);
  if (q.state === 'waiting') {
    const withdraw = el('button', { type: 'button', class: 'button-secondary button-small withdraw-button' }, 'Withdraw');
    withdraw.addEventListener('click', () => confirmWithdraw(q, withdraw));
    actions.append(withdraw);
  }
  li.append(actions);
  return li;
}

async function toggleDetails(q, li, toggle) {
  const shown = li.querySelector('.review-details');
  if (shown) {
    shown.remove();
    open.delete(q.id);
    toggle.setAttribute('aria-expanded', 'false');
    toggle.textContent = 'Show details';
    return;
  }
  toggle.disabled = true;
  try {
    const data = await api('GET', `/api/review/requests/${encodeURIComponent(q.id)}`);
    open.add(q.id);
    li.append(detailsOf(data.request));
    toggle.setAttribute('aria-expanded', 'true');
    toggle.textContent = 'Hide details';
  } catch (err) {
    handle(err, listForm);
  } finally {
    toggle.disabled = false;
  }
}

async function confirmWithdraw(q, button) {
  const box = button.parentElement;
  const yes = await confirmInline(box, {
    question: `Withdraw this request? The ${tokens(q.price)} held come back to your wallet and the case copy is destroyed.`,
    yes: 'Yes, withdraw', no: 'Keep waiting',
  });
  if (!yes) {
    button.focus();
    return;
  }
  try {
    await api('POST', `/api/review/requests/${encodeURIComponent(q.id)}/withdraw`, {});
    await loadRequests();
    showOk(listForm, `Withdrawn: ${tokens(q.price)} given back to your wallet.`);
  } catch (err) {
    if (err.code === 'not_waiting') {
      await loadRequests();
      showError(listForm, err, 'This request is no longer waiting (it was answered, returned or expired meanwhile); the list has been refreshed.');
      return;
    }
    handle(err, listForm);
  }
  $('#requests-heading').focus();
}

async function renderRequests() {
  list.replaceChildren(...requests.map(requestItem));
  // Answers are what the person came for: show them without a click.
  for (const q of requests) {
    const li = list.querySelector(`li[data-id="${CSS.escape(q.id)}"]`);
    if (li && (open.has(q.id) || q.state === 'answered') && !li.querySelector('.review-details')) {
      open.delete(q.id);
      await toggleDetails(q, li, li.querySelector('.details-toggle'));
    }
  }
  listStatus.textContent = requests.length
    ? `${requests.length} ${requests.length === 1 ? 'request' : 'requests'}, newest first.`
    : 'You have not asked for a review yet.';
}

async function loadRequests() {
  const data = await api('GET', '/api/review/requests');
  requests = Array.isArray(data.requests) ? data.requests : [];
  await renderRequests();
}

function handle(err, where) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (err.code === 'forbidden') {
    showStaffNotice(page, user, 'Clinician reviews');
    return;
  }
  showError(where, err);
}

// ---- asking ----

// The API's refusals in plain words; some need a link or a fresh list.
async function refusal(err, offer) {
  if (err.code === 'insufficient_tokens') {
    askMessage.classList.remove('is-ok');
    askMessage.replaceChildren(`Not enough tokens: this review costs ${tokens(offer.price)}, more than your wallet holds. `
      + 'You earn tokens by sharing screening results with public health. ', el('a', { href: '/wallet' }, 'See your wallet'), '.');
    return;
  }
  if (err.code === 'no_offer') {
    await loadOffers();
    renderPreview();
    showError(form, { field: null }, `${offer.organisation.name} no longer offers review for this. Choose another organisation.`);
    return;
  }
  if (err.code === 'no_photo') {
    showError(form, { field: 'record_id' }, 'This entry has no photo to share. Check the skin again and save it with “Keep the photo” ticked.');
    return;
  }
  if (err.code === 'not_found') {
    await loadRecords();
    renderRecords();
    renderPreview();
    showError(form, { field: 'record_id' }, 'That entry no longer exists; the list has been refreshed.');
    return;
  }
  if (err.code === 'unauthenticated' || err.code === 'forbidden') {
    handle(err, form);
    return;
  }
  if (err.field && !form.elements.namedItem(err.field)) err.field = null;
  showError(form, err);
}

const rules = [
  () => (chosenRecord() ? null : { field: 'record_id', message: 'First save a skin check with its photo (Check skin, then “Keep the photo”).' }),
  () => (chosenOffer() ? null : { field: 'org', message: 'Choose an organisation to review it.' }),
];

form.addEventListener('change', renderPreview);
form.addEventListener('input', renderPreview);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!validate(form, rules)) {
    if (!chosenOffer()) offerList.querySelector('input')?.focus();
    return;
  }
  const offer = chosenOffer();
  const record = chosenRecord();
  const actions = $('#ask-actions');
  const ok = await confirmInline(actions, {
    question: `Send “${record.title}” with its photo and the extras shown to ${offer.organisation.name}, `
      + `holding ${tokens(offer.price)}?`,
    yes: 'Yes, send it', no: 'Not yet', danger: false,
  });
  if (!ok) {
    $('#ask-submit').focus();
    return;
  }
  await submitting(form, async () => {
    clearErrors(form);
    let data;
    try {
      data = await api('POST', '/api/review/requests', { record_id: record.id, org: offer.organisation.key, share: shareOf() });
    } catch (err) {
      await refusal(err, offer);
      return;
    }
    for (const name of EXTRAS) form.elements.namedItem(name).value = '';
    renderPreview();
    await loadRequests();
    // Public health (issue 14): whether the answer will be counted and paid —
    // a duplicate photo or today's cap is said here, not discovered later.
    const shared = data.request.contribution ? ` Public health: ${data.request.contribution.message}.` : '';
    showOk(form, `Sent to ${offer.organisation.name}. ${tokens(offer.price)} are held until a clinician answers `
      + `(due by ${new Date(data.request.answer_due).toLocaleString()}).${shared}`);
  });
  $('#ask-submit').focus();
});

// ---- start ----

if (user && user.role !== 'person') {
  showStaffNotice(page, user, 'Clinician reviews');
  page.hidden = false;
} else {
  try {
    page.hidden = false;
    listStatus.textContent = 'Loading your requests…';
    const cond = await api('GET', '/api/review/conditions');
    conditionNames = new Map((cond.conditions || []).map((c) => [c.code, c.name]));
    await Promise.all([loadRecords(), loadOffers()]);
    renderRecords(new URLSearchParams(location.search).get('record'));
    renderPreview();
    await loadRequests();
    // From a record entry's "See this review" link (/reviews#request-ID).
    const linked = location.hash.startsWith('#request-') && document.getElementById(location.hash.slice(1));
    if (new URLSearchParams(location.search).get('record')) $('#ask-heading').focus();
    else if (linked) linked.focus();
  } catch (err) {
    listStatus.textContent = '';
    if (err.code === 'unauthenticated' || err.code === 'forbidden') handle(err, listForm);
    else pageMessage.textContent = err.message;
  }
}
