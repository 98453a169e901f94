// Administrators: credit an organisation (a ledger-recorded mint for a
// purchase made outside the product) and approve pending data requests
// (approving funds the request in full on the ledger before anyone sees it).
import { api } from './api.js';
import { $, el } from './dom.js';
import { startPage } from './layout.js';
import { criteriaText, facts, handle } from './market-ui.js';
import { clearErrors, showOk, submitting, validate, value } from './forms.js';
import {
  confirmAndHold, dateFromIso, purposeLabel, scopeText, shortHex, tokens, txLink,
} from './ledger-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#admin-page');
const creditForm = $('#credit-form');
const orgSelect = $('#credit-org');
const creditReceipt = $('#credit-receipt');
const filter = $('#state-filter');
const list = $('#request-list');
const listStatus = $('#list-status');
const listMessage = $('#list-message');

const STATE_LABEL = {
  pending: 'Pending approval', funding: 'Being funded', open: 'Open', closing: 'Closing', closed: 'Closed', withdrawn: 'Withdrawn',
};
let requests = [];

function requestItem(r) {
  const li = el('li', { class: `record market-request state-${r.state}`, 'data-id': r.id, 'data-state': r.state });
  const headingId = `req-${r.id}-title`;
  const total = r.price * r.max_participants;
  li.append(
    el('div', { class: 'record-head' },
      el('span', { class: 'tag request-state' }, STATE_LABEL[r.state] || r.state),
      el('h3', { class: 'record-title', id: headingId }, r.title)),
    facts(
      ['Organisation', el('strong', {}, r.organisation.name), ' ', el('code', { class: 'hex hex-short', title: r.organisation.key }, shortHex(r.organisation.key))],
      ['Purpose', `${purposeLabel(r.purpose)} `, el('code', {}, r.purpose)],
      ['In their words', el('span', { class: 'record-details' }, r.purpose_text)],
      ['Asks for', scopeText(r.categories)],
      ['Who matches', criteriaText(r.criteria)],
      ['Payment', `${tokens(r.price)} × ${r.max_participants} ${r.max_participants === 1 ? 'place' : 'places'} = `, el('strong', { class: 'total' }, tokens(total))],
      ['Closes', dateFromIso(r.closes)],
      ['Posted', dateFromIso(r.created_at)],
      r.escrow_txid ? ['Escrow', txLink(r.escrow_txid, { label: 'Funding transaction' }),
        ` · ${r.paid} paid, ${tokens(r.remaining ?? 0)} left`] : null));
  if (r.state !== 'pending') return li;
  const actions = el('div', { class: 'record-actions' });
  const approve = el('button', { type: 'button', class: 'button-small approve-button', 'aria-describedby': headingId }, `Approve and fund (${tokens(total)})`);
  approve.addEventListener('click', () => approveRequest(r, actions, total));
  actions.append(approve);
  li.append(actions);
  return li;
}

async function approveRequest(r, actions, total) {
  listMessage.textContent = '';
  const button = await confirmAndHold(actions, {
    question: `Approve “${r.title}”? ${tokens(total)} move from ${r.organisation.name}’s balance into an escrow on the `
      + 'ledger, and people whose record matches start to see the request.',
    yes: 'Yes, approve and fund',
    no: 'Not now',
    label: `Confirm approving “${r.title}”`,
    danger: false,
  });
  if (!button) return;
  try {
    const done = await api('POST', `/api/admin/market/requests/${encodeURIComponent(r.id)}/approve`, {});
    await load();
    listMessage.classList.add('is-ok');
    listMessage.replaceChildren(`Approved “${r.title}”: ${tokens(total)} in escrow, funding transaction `,
      txLink(done.request.escrow_txid, { label: 'Funding transaction' }), '.');
    $('#list-heading').focus();
  } catch (err) {
    button.disabled = false;
    if (err.code === 'insufficient_tokens') {
      err.message = `${err.message} Credit ${r.organisation.name} above first.`;
    }
    handle(err, listMessage);
  }
}

function render() {
  list.replaceChildren(...requests.map(requestItem));
  const what = filter.value ? (STATE_LABEL[filter.value] || filter.value).toLowerCase() : '';
  listStatus.textContent = requests.length ? `${requests.length} ${requests.length === 1 ? 'request' : 'requests'}`
    : `No ${what ? `${what} ` : ''}requests.`;
}

async function load() {
  const q = filter.value ? `?state=${encodeURIComponent(filter.value)}` : '';
  const data = await api('GET', `/api/admin/market/requests${q}`);
  requests = Array.isArray(data.requests) ? data.requests : [];
  render();
}

async function loadOrgs() {
  const data = await api('GET', '/api/ledger/orgs');
  const orgs = Array.isArray(data.organisations) ? data.organisations : [];
  const keep = orgSelect.value;
  orgSelect.replaceChildren(el('option', { value: '' }, orgs.length ? 'Choose…' : 'No organisation is registered'),
    ...orgs.map((o) => el('option', { value: o.key }, `${o.name} (${shortHex(o.key)})`)));
  if (keep) orgSelect.value = keep;
}

creditForm.addEventListener('submit', (event) => {
  event.preventDefault();
  creditReceipt.replaceChildren();
  if (!validate(creditForm)) return;
  const key = value(creditForm, 'org');
  const name = orgSelect.selectedOptions[0] ? orgSelect.selectedOptions[0].textContent : key;
  const body = { amount: Number(value(creditForm, 'amount')), reference: value(creditForm, 'reference').trim() };
  submitting(creditForm, async () => {
    const done = await api('POST', `/api/admin/orgs/${encodeURIComponent(key)}/credit`, body);
    creditForm.reset();
    clearErrors(creditForm);
    showOk(creditForm, `Credited ${tokens(done.amount)} to ${name}, reference ${done.reference}. Its balance is now ${tokens(done.balance)}.`);
    creditReceipt.replaceChildren(el('p', { class: 'receipt-note' }, 'Recorded on the ledger: transaction ',
      txLink(done.txid, { label: 'Credit transaction' }), '.'));
  });
});

filter.addEventListener('change', () => {
  load().catch((err) => handle(err, listMessage));
});

page.hidden = false;
if (!user || user.role !== 'admin') {
  page.replaceChildren(el('div', { class: 'notice', role: 'status', id: 'admin-notice' },
    el('h2', {}, 'Only administrators approve data requests'),
    el('p', {}, `You are signed in as ${user ? user.username : 'someone else'}. `,
      user && user.role === 'person' ? el('a', { href: '/data-requests' }, 'See the data requests open to you') : null)));
} else {
  try {
    listStatus.textContent = 'Loading…';
    await Promise.all([load(), loadOrgs()]);
  } catch (err) {
    listStatus.textContent = '';
    handle(err, listMessage);
  }
}
