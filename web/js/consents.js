// Consents: explain sharing, give a consent (categories, purpose, who, how
// long), list consents with their receipts, revoke with a confirmation step.
// Every change is a ledger transaction; its receipt (block, txid) is shown.
import { api } from './api.js';
import { $, el } from './dom.js';
import { showStaffNotice, startPage } from './layout.js';
import { clearErrors, showError, submitting, validate, value } from './forms.js';
import {
  STATUS_LABEL, blockLink, confirmAndHold, dateFromIso, purposeLabel, receiptNote, scopeText, shortHex, tokens,
} from './ledger-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#consents-page');
const form = $('#grant-form');
const grantReceipt = $('#grant-receipt');
const grantee = $('#grant-grantee');
const list = $('#consent-list');
const listStatus = $('#list-status');
const listBox = $('#list-box');
const listReceipt = $('#list-receipt');
const listHeading = $('#list-heading');

let consents = [];
const orgNames = new Map(); // organisation key → name

function handle(err, where) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (err.code === 'forbidden') {
    showStaffNotice(page, user, 'Consents');
    return;
  }
  showError(where, err);
}

function granteeText(key) {
  if (!key || key === 'public_health_pool') return 'The public health pool';
  const name = orgNames.get(key);
  return name ? `${name} (organisation ${shortHex(key)})` : `Organisation ${shortHex(key)}`;
}

function detail(term, ...desc) {
  return [el('dt', {}, term), el('dd', {}, ...desc)];
}

function clearMessages() {
  clearErrors(listBox);
  listReceipt.replaceChildren();
}

const TRAINING = 'model_training';

async function revoke(c, actions) {
  const title = scopeText(c.scope);
  clearMessages();
  const button = await confirmAndHold(actions, {
    question: c.purpose === TRAINING
      ? 'Stop helping to train the model? The photos and labels kept from your reviews will be deleted.'
      : 'Stop sharing this data? Nothing more will be used from now on.',
    yes: 'Yes, revoke',
    no: 'Keep sharing',
    label: `Confirm revoking the consent for ${title}`,
  });
  if (!button) return;
  try {
    const data = await api('POST', `/api/consents/${encodeURIComponent(c.id)}/revoke`);
    await load();
    // Revoking a training consent deletes the kept examples first; the API
    // says how many (examples_deleted).
    let lead = `Consent for ${title.toLowerCase()} revoked.`;
    if (Number.isInteger(data.examples_deleted)) {
      const n = data.examples_deleted;
      const what = n === 0 ? 'No training examples had been kept, so nothing was deleted.'
        : `${n} training ${n === 1 ? 'example (a photo and its label) was' : 'examples (photos and labels) were'} deleted.`;
      lead = `Consent to help train the screening model revoked. ${what}`;
    }
    listReceipt.replaceChildren(receiptNote(data.receipt, lead));
    listHeading.focus();
  } catch (err) {
    button.disabled = false;
    if (err.code === 'ledger_conflict') {
      err.message = 'This consent was already revoked.';
      await load().catch(() => {});
    } else if (err.code === 'not_found') {
      err.message = 'That consent no longer exists; the list has been refreshed.';
      await load().catch(() => {});
    }
    handle(err, listBox);
  }
}

function item(c) {
  const title = scopeText(c.scope);
  const status = STATUS_LABEL[c.status] || c.status;
  const li = el('li', { class: `consent consent-${c.status}`, 'data-id': c.id, 'data-status': c.status });
  const facts = el('dl', { class: 'facts' },
    ...detail('Used for', purposeLabel(c.purpose)),
    ...detail('Shared with', granteeText(c.grantee)),
    ...detail('Given', blockLink(c.granted_block)));
  if (c.status === 'revoked') {
    facts.append(...detail('Revoked', c.revoked_block !== null && c.revoked_block !== undefined
      ? blockLink(c.revoked_block) : 'yes'));
  } else {
    facts.append(...detail(c.status === 'expired' ? 'Ended' : 'Ends', dateFromIso(c.expires_at)));
  }
  const actions = el('div', { class: 'record-actions' });
  if (c.status === 'active') {
    const button = el('button', { type: 'button', class: 'button-secondary button-small revoke-button',
      'aria-label': `Revoke the consent for ${title}` }, 'Revoke');
    button.addEventListener('click', () => revoke(c, actions));
    actions.append(button);
  }
  actions.append(el('a', {
    href: c.receipt_url, download: true, class: 'button button-secondary button-small receipt-link',
    'aria-label': `Download receipt for the consent for ${title}`,
  }, 'Download receipt'));
  li.append(
    el('div', { class: 'record-head' },
      el('span', { class: `tag status status-${c.status}` }, status),
      el('h3', { class: 'record-title' }, title)),
    facts, actions);
  return li;
}

function render() {
  list.replaceChildren(...consents.map(item));
  const active = consents.filter((c) => c.status === 'active').length;
  if (!consents.length) listStatus.textContent = 'You have not given any consent. Nothing is shared.';
  else listStatus.textContent = `${consents.length} ${consents.length === 1 ? 'consent' : 'consents'}, ${active} active.`;
}

async function load() {
  const data = await api('GET', '/api/consents');
  consents = Array.isArray(data.consents) ? data.consents : [];
  render();
}

// The reward per category is fixed in the ledger's first block.
async function loadRewards() {
  const data = await api('GET', '/api/ledger/blocks/0');
  const params = (data.transactions || []).find((t) => t.kind === 'params');
  if (!params || !params.reward) return;
  for (const [category, amount] of Object.entries(params.reward)) {
    const note = document.getElementById(`reward-${category}`);
    if (note) note.textContent = `${tokens(amount)} each time it is counted`;
  }
}

async function loadOrgs() {
  const data = await api('GET', '/api/ledger/orgs');
  for (const o of data.organisations || []) {
    orgNames.set(o.key, o.name);
    grantee.append(el('option', { value: o.key }, `${o.name} (organisation ${shortHex(o.key)})`));
  }
}

// Training uses screening results only (the server keeps an example for a
// training consent whose scope covers screening; other categories would be
// granted but never used), so the form asks for exactly that.
const scopeBoxes = [...form.querySelectorAll('input[name="scope_item"]')];
function syncPurpose() {
  const training = value(form, 'purpose') === TRAINING;
  for (const box of scopeBoxes) {
    if (box.value === 'screening') {
      if (training) box.checked = true;
      box.disabled = training;
    } else {
      if (training) box.checked = false;
      box.disabled = training;
    }
  }
  // Training earns no tokens: the reward notes would mislead.
  for (const note of form.querySelectorAll('[id^="reward-"]')) note.hidden = training;
  $('#grant-scope-hint').hidden = training;
  $('#grant-scope-training').hidden = !training;
  $('#grant-scope').setAttribute('aria-describedby', training ? 'grant-scope-training' : 'grant-scope-hint');
}
form.addEventListener('change', (event) => {
  if (event.target.name === 'purpose') syncPurpose();
});

const rules = [
  (f) => (f.querySelectorAll('input[name="scope_item"]:checked').length === 0
    ? { field: 'scope', message: 'Choose at least one kind of data to share.' } : null),
];

// Server field names → this form's control names.
const FIELD = { purpose: 'purpose_group', scope: 'scope', grantee: 'grantee', expires_in_days: 'expires_in_days' };

form.addEventListener('submit', (event) => {
  event.preventDefault();
  grantReceipt.replaceChildren();
  clearMessages();
  if (!validate(form, rules)) return;
  const body = {
    scope: scopeBoxes.filter((i) => i.checked).map((i) => i.value),
    purpose: value(form, 'purpose'),
    grantee: value(form, 'grantee'),
    expires_in_days: Number(value(form, 'expires_in_days')),
  };
  submitting(form, async () => {
    let data;
    try {
      data = await api('POST', '/api/consents', body);
    } catch (err) {
      if (err.code === 'unauthenticated' || err.code === 'forbidden') {
        handle(err, form);
        return;
      }
      throw err;
    }
    for (const box of scopeBoxes) box.checked = false;
    syncPurpose(); // a training form keeps its one category
    grantReceipt.replaceChildren(receiptNote(data.receipt,
      `Consent given: ${scopeText(data.consent.scope).toLowerCase()} for ${purposeLabel(data.consent.purpose).toLowerCase()}.`));
    await load();
  }, {
    describe: (err) => {
      if (err.field) err.field = FIELD[err.field] || null;
      return err.message;
    },
  });
});

try {
  page.hidden = false;
  syncPurpose(); // a reload may restore the training choice
  listStatus.textContent = 'Loading your consents…';
  await loadOrgs().catch(() => {}); // only needed to name organisations
  await load();
  loadRewards().catch(() => {});
} catch (err) {
  listStatus.textContent = '';
  handle(err, listBox);
}
