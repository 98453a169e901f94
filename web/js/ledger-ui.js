// Shared pieces for the ledger pages (consents, wallet, public explorer):
// plain-language labels for transaction kinds, data categories and purposes,
// short hex ids, explorer links, ledger receipts and an inline "are you
// sure?" step. Everything is built with el(): text only, never HTML.
import { el } from './dom.js';

export const KIND_LABEL = {
  params: 'Ledger settings',
  register_wallet: 'Wallet opened',
  anchor: 'Health record entry anchored',
  grant_consent: 'Consent given',
  revoke_consent: 'Consent revoked',
  contribute: 'Reward for shared data',
  transfer: 'Token transfer',
  redeem: 'Tokens redeemed',
  register_org: 'Organisation registered',
  release: 'Aggregated data released',
  review_request: 'Clinician review requested (tokens held)',
  review_settle: 'Clinician review paid',
  review_refund: 'Clinician review refunded',
  credit: 'Organisation credited (tokens bought)',
  market_open: 'Data request funded (tokens held)',
  market_pay: 'Paid for sharing data with a data request',
  market_close: 'Data request closed (unused tokens returned)',
};

export const CATEGORY_LABEL = {
  screening: 'Skin screening results',
  conditions: 'Conditions',
  symptoms: 'Symptoms',
  demographics: 'Age group, sex and region',
};

export const PURPOSE_LABEL = {
  public_health_surveillance: 'Public health surveillance',
  research: 'Health research',
  model_training: 'Help train the screening model',
};

export const STATUS_LABEL = { active: 'Active', revoked: 'Revoked', expired: 'Expired' };

export const kindLabel = (kind) => KIND_LABEL[kind] || kind;
export const categoryLabel = (c) => CATEGORY_LABEL[c] || c;
export const purposeLabel = (p) => PURPOSE_LABEL[p] || p;

// "conditions, symptoms" → "Conditions and symptoms"
export function scopeText(scope) {
  const words = (Array.isArray(scope) ? scope : []).map((c, i) => {
    const label = categoryLabel(c);
    return i === 0 ? label : label.charAt(0).toLowerCase() + label.slice(1);
  });
  if (words.length <= 1) return words[0] || 'Nothing';
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

export const HEX64 = /^[0-9a-f]{64}$/;

// 64 hex digits → "b1d4e755…e52a" (the full value stays in the title and link).
export function shortHex(hex, head = 8, tail = 4) {
  if (typeof hex !== 'string' || hex.length <= head + tail + 1) return hex || '';
  return `${hex.slice(0, head)}…${hex.slice(-tail)}`;
}

export function txHref(txid) {
  return `/ledger?tx=${encodeURIComponent(txid)}`;
}

export function blockHref(height) {
  return `/ledger?block=${encodeURIComponent(height)}`;
}

// A link to a transaction in the explorer, shown shortened.
export function txLink(txid, { label } = {}) {
  return el('a', { href: txHref(txid), class: 'hex hex-short', title: txid, 'aria-label': label || `Transaction ${shortHex(txid)}` },
    shortHex(txid));
}

export function blockLink(height, word = 'Block') {
  return el('a', { href: blockHref(height) }, `${word} ${height}`);
}

// A full hex value that wraps on small screens.
export function hexCode(hex) {
  return el('code', { class: 'hex' }, hex);
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// Milliseconds since 1970 → <time> in the reader's locale.
export function timeFromMs(ms) {
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return el('span', {}, String(ms));
  return el('time', { datetime: d.toISOString() },
    d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }));
}

// RFC 3339 date-time → <time> showing the date.
export function dateFromIso(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return el('span', {}, iso || '—');
  return el('time', { datetime: iso }, d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' }));
}

// Seconds since 1970 (as in a grant's "expires") → <time> showing the date.
export function dateFromSeconds(s) {
  const d = new Date(Number(s) * 1000);
  if (Number.isNaN(d.getTime())) return el('span', {}, String(s));
  const iso = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
  return dateFromIso(iso);
}

// "+5", "−3" (a real minus sign) or "0".
export function formatDelta(delta) {
  const n = Number(delta) || 0;
  if (n > 0) return `+${n.toLocaleString()}`;
  if (n < 0) return `\u2212${Math.abs(n).toLocaleString()}`;
  return '0';
}

export function tokens(n) {
  const v = Number(n) || 0;
  return `${v.toLocaleString()} ${v === 1 ? 'token' : 'tokens'}`;
}

// "Recorded on the ledger in block 5, transaction b1d4e755…e52a." with links.
export function receiptNote(receipt, lead) {
  const p = el('p', { class: 'receipt-note' });
  if (lead) p.append(lead, ' ');
  if (receipt && receipt.txid) {
    p.append('Recorded on the ledger in ', blockLink(receipt.block, 'block'), ', transaction ',
      txLink(receipt.txid), '.');
  }
  return p;
}

// confirmInline, then the usual next step of an action row: on "no", focus
// goes back to the row's button (selector, found once the row is back) and
// the answer is null; on "yes" that button is disabled while the action runs
// and returned (the caller enables it again if the action fails).
export async function confirmAndHold(box, options, selector = 'button') {
  const yes = await confirmInline(box, options);
  const button = box.querySelector(selector);
  if (!yes) {
    if (button) button.focus();
    return null;
  }
  if (button) button.disabled = true;
  return button;
}

// Replace `box` by a question with two buttons until one is chosen; resolves
// to true for yes. The original box comes back afterwards, and focus with it.
export function confirmInline(box, { question, yes, no, label, danger = true }) {
  return new Promise((resolve) => {
    const yesButton = el('button', { type: 'button', class: `${danger ? 'button-danger' : ''} button-small` }, yes);
    const noButton = el('button', { type: 'button', class: 'button-secondary button-small' }, no);
    const group = el('div', { class: 'confirm-box', role: 'group', 'aria-label': label || question },
      el('p', { class: 'confirm-question' }, question), el('div', { class: 'record-actions' }, yesButton, noButton));
    const finish = (answer) => {
      group.replaceWith(box);
      resolve(answer);
    };
    yesButton.addEventListener('click', () => finish(true));
    noButton.addEventListener('click', () => finish(false));
    group.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        finish(false);
      }
    });
    box.replaceWith(group);
    noButton.focus();
  });
}
