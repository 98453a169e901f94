// Wallet: balance, public key (with a copy button), ledger history, and
// forms to send and redeem tokens, each confirmed before it is sent.
import { api } from './api.js';
import { $, el } from './dom.js';
import { startPage } from './layout.js';
import { clearErrors, showError, submitting, validate, value } from './forms.js';
import { copyText } from './recovery.js';
import {
  blockLink, categoryLabel, confirmInline, formatDelta, kindLabel, receiptNote, shortHex, tokens, txLink,
} from './ledger-ui.js';

await startPage({ auth: 'required' });
const page = $('#wallet-page');
const pageMessage = $('#wallet-message');
const balanceEl = $('#wallet-balance');
const unitEl = $('#wallet-unit');
const keyEl = $('#wallet-key');
const historyStatus = $('#history-status');
const historyTable = $('#history-table');
const historyBody = $('#history-body');
const transferForm = $('#transfer-form');
const redeemForm = $('#redeem-form');

let wallet = null;
const orgNames = new Map(); // organisation key → name, from the review offers

// Where a review's held tokens went: the request row carries its escrow.
const ESCROW_TEXT = {
  open: () => 'held until a clinician answers',
  settled: (e) => [`paid to the organisation in `, blockLink(e.closed_block, 'block')],
  refunded: (e) => [`given back to you in `, blockLink(e.closed_block, 'block')],
};

function orgLabel(key) {
  const name = orgNames.get(key);
  return name ? el('span', { title: key }, name) : el('code', { class: 'hex', title: key }, shortHex(key));
}

function whatHappened(h) {
  const label = kindLabel(h.kind);
  if (h.kind === 'transfer' && h.counterparty) {
    const dir = Number(h.delta) < 0 ? 'sent to ' : 'received from ';
    return [`${label}: ${dir}`, el('code', { class: 'hex', title: h.counterparty }, shortHex(h.counterparty))];
  }
  if (h.kind === 'contribute' && h.category) return [`${label}: ${categoryLabel(h.category).toLowerCase()}`];
  if (h.kind === 'review_request' && h.counterparty) {
    const e = h.escrow || { state: 'open' };
    return [`${label} from `, orgLabel(h.counterparty), el('span', { class: `escrow-state escrow-${e.state}` },
      ' — ', ...[].concat((ESCROW_TEXT[e.state] || ESCROW_TEXT.open)(e)))];
  }
  if (h.kind === 'review_refund') {
    const asked = wallet.history.find((x) => x.kind === 'review_request' && x.txid === h.request);
    return asked && asked.counterparty
      ? [`${label}: the tokens held for `, orgLabel(asked.counterparty), ' came back']
      : [`${label}: the held tokens came back`];
  }
  // A data request's payment names the request's escrow (its market_open).
  if (h.kind === 'market_pay' && h.request) {
    return [`${label} (request `, txLink(h.request, { label: 'The data request on the ledger' }), ')'];
  }
  return [label];
}

function row(h) {
  const delta = Number(h.delta) || 0;
  return el('tr', { 'data-kind': h.kind, 'data-txid': h.txid, 'data-escrow': h.escrow ? h.escrow.state : null },
    el('td', { 'data-label': 'What happened' }, ...whatHappened(h)),
    el('td', { 'data-label': 'Change', class: `num ${delta > 0 ? 'delta-up' : delta < 0 ? 'delta-down' : ''}` },
      formatDelta(delta)),
    el('td', { 'data-label': 'Block' }, blockLink(h.block)),
    el('td', { 'data-label': 'Transaction' }, txLink(h.txid)));
}

function render() {
  balanceEl.textContent = Number(wallet.balance || 0).toLocaleString();
  unitEl.textContent = Number(wallet.balance) === 1 ? 'token' : 'tokens';
  keyEl.textContent = wallet.public_key;
  const held = Number(wallet.escrowed) || 0;
  $('#wallet-escrowed').textContent = tokens(held);
  $('#wallet-escrow-line').hidden = held === 0;
  const history = Array.isArray(wallet.history) ? wallet.history : [];
  historyBody.replaceChildren(...history.map(row));
  historyTable.hidden = history.length === 0;
  historyStatus.textContent = history.length
    ? `${history.length} ${history.length === 1 ? 'transaction' : 'transactions'}, newest first.`
    : 'No transactions yet.';
}

async function load() {
  const data = await api('GET', '/api/wallet');
  wallet = data.wallet;
  await loadOrgNames();
  render();
}

// Names for the organisations of review requests (the history has keys),
// fetched before the history is drawn so that a row never changes under the
// reader. Only a nicety: without it the key is shown.
async function loadOrgNames() {
  const unnamed = (h) => h.kind === 'review_request' && h.counterparty && !orgNames.has(h.counterparty);
  if (!wallet || !wallet.history.some(unnamed)) return;
  try {
    const data = await api('GET', '/api/review/offers');
    for (const o of data.offers || []) orgNames.set(o.organisation.key, o.organisation.name);
  } catch { /* keys stay */ }
}

function failPage(err) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  pageMessage.textContent = err.message;
}

$('#copy-key').addEventListener('click', async () => {
  const ok = await copyText(keyEl.textContent, keyEl);
  $('#copy-status').textContent = ok ? 'Copied.' : 'Could not copy automatically: the key is selected, copy it by hand.';
});

// Plain words for the ledger's refusals.
function describe(err) {
  if (err.code === 'validation_failed' && /insufficient balance/i.test(err.message)) {
    const m = /\((\d+) available\)/.exec(err.message);
    err.field = 'amount';
    return `Not enough tokens: your balance is ${tokens(m ? m[1] : wallet?.balance)}.`;
  }
  if (err.code === 'not_found') {
    err.field = 'to';
    return 'No wallet has this key. Check it with the recipient and try again.';
  }
  if (err.field === 'to' && /yourself/i.test(err.message)) return 'That is your own wallet key. Enter the recipient’s key.';
  if (err.field === 'tx') {
    err.field = 'to';
    return 'This key cannot receive tokens. Check it with the recipient and try again.';
  }
  if (err.field && err.field !== 'to' && err.field !== 'amount') err.field = null;
  return err.message;
}

// Validate, ask for confirmation in place of the submit button, then send.
async function confirmAndSend(form, { question, yes, send, done }) {
  clearErrors(form);
  const receipt = form.querySelector('.receipt');
  receipt.replaceChildren();
  if (!validate(form)) return;
  const actions = form.querySelector('.form-actions');
  const ok = await confirmInline(actions, { question: question(), yes, no: 'Cancel', danger: false });
  const submit = form.querySelector('button[type="submit"]');
  if (!ok) {
    submit.focus();
    return;
  }
  await submitting(form, async () => {
    const data = await send();
    form.reset();
    receipt.replaceChildren(receiptNote(data.receipt, done()));
    await load();
  }, { describe });
  if (!form.querySelector('[aria-invalid="true"]')) submit.focus();
}

const amountOf = (form) => Number(value(form, 'amount'));

transferForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const to = () => value(transferForm, 'to').trim().toLowerCase();
  let sent = { amount: 0, to: '' };
  confirmAndSend(transferForm, {
    question: () => `Send ${tokens(amountOf(transferForm))} to ${shortHex(to())}? This cannot be undone.`,
    yes: 'Yes, send',
    send: () => {
      sent = { amount: amountOf(transferForm), to: to() };
      return api('POST', '/api/wallet/transfer', sent);
    },
    done: () => `Sent ${tokens(sent.amount)} to ${shortHex(sent.to)}.`,
  }).catch(failPage);
});

redeemForm.addEventListener('submit', (event) => {
  event.preventDefault();
  let amount = 0;
  confirmAndSend(redeemForm, {
    question: () => `Redeem ${tokens(amountOf(redeemForm))}? They are burned and cannot be given back.`,
    yes: 'Yes, redeem',
    send: () => {
      amount = amountOf(redeemForm);
      return api('POST', '/api/wallet/redeem', { amount });
    },
    done: () => `Redeemed ${tokens(amount)}.`,
  }).catch(failPage);
});

try {
  page.hidden = false;
  historyStatus.textContent = 'Loading your wallet…';
  await load();
} catch (err) {
  historyStatus.textContent = '';
  failPage(err);
}
