// The public ledger explorer; no login needed. Views are chosen by the query
// string so each one can be linked to:
//   /ledger                 signed tree head, totals, latest blocks, organisations
//   /ledger?before=H        blocks below height H ("older")
//   /ledger?block=N[&offset=K]  one block and its transactions
//   /ledger?tx=<64 hex>     one transaction and its inclusion proof
// The API holds no personal data, and this page adds none.
import { api } from './api.js';
import { $, el } from './dom.js';
import { startPage } from './layout.js';
import { showError, validate, value } from './forms.js';
import {
  HEX64, blockHref, blockLink, categoryLabel, dateFromSeconds, hexCode, kindLabel, purposeLabel, scopeText,
  shortHex, timeFromMs, tokens, txHref, txLink,
} from './ledger-ui.js';

const BLOCKS_PER_PAGE = 10;
const TX_PER_PAGE = 100; // the API's page size for a block's transactions

await startPage({ auth: 'public' });

const view = $('#view');
const status = $('#view-status');
const lookup = $('#lookup-form');
const params = new URLSearchParams(location.search);

function setTitle(here) {
  document.title = here ? `${here} · Public ledger · CareSync` : 'Public ledger · CareSync';
  if (here) {
    $('#crumb-here').textContent = here;
    $('#crumbs').hidden = false;
  }
}

function facts(rows) {
  const dl = el('dl', { class: 'facts' });
  for (const [term, ...desc] of rows) dl.append(el('dt', {}, term), el('dd', {}, ...desc));
  return dl;
}

function section(id, heading, ...children) {
  return el('section', { class: 'card', 'aria-labelledby': id }, el('h2', { id }, heading), ...children);
}

function problem(message) {
  return el('p', { class: 'notice notice-warning', role: 'alert' }, message);
}

function nonNegativeInt(text) {
  return /^\d{1,15}$/.test(text || '') ? Number(text) : null;
}

function granteeNode(g) {
  return g === 'public_health_pool' ? 'The public health pool' : el('span', {}, 'Organisation ', hexCode(g));
}

// What a transaction says, beyond kind/signer/nonce, in plain words.
function txDetails(tx) {
  switch (tx.kind) {
  case 'params': return [
    ['Administrator key', hexCode(tx.admin)],
    ['Node keys', ...(tx.nodes || []).flatMap((k, i) => (i ? [el('br'), hexCode(k)] : [hexCode(k)]))],
    ['Rewards', Object.entries(tx.reward || {}).map(([c, n]) => `${categoryLabel(c)}: ${tokens(n)}`).join('; ')],
  ];
  case 'register_wallet': return [];
  case 'anchor': return [['Commitment', hexCode(tx.commitment)]];
  case 'grant_consent': return [
    ['Data', scopeText(tx.scope)],
    ['Purpose', purposeLabel(tx.purpose)],
    ['Shared with', granteeNode(tx.grantee)],
    ['Ends', dateFromSeconds(tx.expires)],
  ];
  case 'revoke_consent': return [['Revokes the consent', el('a', { href: txHref(tx.grant), class: 'hex' }, tx.grant)]];
  case 'contribute': return [
    ['Contributor', hexCode(tx.contributor)],
    ['Under the consent', el('a', { href: txHref(tx.grant), class: 'hex' }, tx.grant)],
    ['Data category', categoryLabel(tx.category)],
    ['Commitment', hexCode(tx.commitment)],
    ['Reward', tokens(tx.reward)],
  ];
  case 'transfer': return [['To wallet', hexCode(tx.to)], ['Amount', tokens(tx.amount)]];
  case 'redeem': return [['Amount', tokens(tx.amount)]];
  case 'register_org': return [['Organisation', tx.name], ['Organisation key', hexCode(tx.org)]];
  case 'release': return [
    ['Organisation key', hexCode(tx.org)],
    ['Query', hexCode(tx.query)],
    ['Privacy budget (ε)', String((Number(tx.epsilon_milli) || 0) / 1000)],
    ['Smallest group counted', String(tx.k_min)],
    ['Cells released', String(tx.cells)],
  ];
  case 'review_request': return [
    ['Organisation key', hexCode(tx.org)],
    ['Case commitment', hexCode(tx.commitment)],
    ['Tokens held', tokens(tx.price)],
  ];
  case 'review_settle':
  case 'review_refund': return [['Review request', el('a', { href: txHref(tx.request), class: 'hex' }, tx.request)]];
  case 'credit': return [
    ['Organisation key', hexCode(tx.org)],
    ['Tokens', tokens(tx.amount)],
    ['Reference', tx.reference],
  ];
  case 'market_open': return [
    ['Organisation key', hexCode(tx.org)],
    ['Payment per person', tokens(tx.price)],
    ['Places', String(tx.max_participants)],
    ['Tokens held', tokens(Number(tx.price) * Number(tx.max_participants))],
    ['Closes', dateFromSeconds(tx.closes)],
    ['Terms', hexCode(tx.terms)],
  ];
  case 'market_pay': return [
    ['Data request', el('a', { href: txHref(tx.request), class: 'hex' }, tx.request)],
    ['Under the consent', el('a', { href: txHref(tx.grant), class: 'hex' }, tx.grant)],
  ];
  case 'market_close': return [['Data request', el('a', { href: txHref(tx.request), class: 'hex' }, tx.request)]];
  default: {
    const known = new Set(['kind', 'signer', 'nonce', 'txid', 'leaf_index', 'block']);
    return Object.entries(tx).filter(([k]) => !known.has(k))
      .map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  }
}

function txSummary(tx) {
  const parts = [];
  if (tx.kind === 'grant_consent') parts.push(`${scopeText(tx.scope)} for ${purposeLabel(tx.purpose).toLowerCase()}`);
  else if (tx.kind === 'transfer' || tx.kind === 'redeem') parts.push(tokens(tx.amount));
  else if (tx.kind === 'contribute') parts.push(`${categoryLabel(tx.category)}, ${tokens(tx.reward)}`);
  else if (tx.kind === 'register_org') parts.push(tx.name);
  else if (tx.kind === 'review_request') parts.push(tokens(tx.price));
  else if (tx.kind === 'credit') parts.push(`${tokens(tx.amount)}, reference ${tx.reference}`);
  else if (tx.kind === 'market_open') parts.push(`${tokens(tx.price)} × ${tx.max_participants} places`);
  return parts.join('');
}

// ---------------------------------------------------------------- overview

function blocksTable(blocks, caption) {
  const body = el('tbody', {}, ...blocks.map((b) => el('tr', { 'data-height': b.height },
    el('td', { 'data-label': 'Block' }, el('a', { href: blockHref(b.height) }, String(b.height))),
    el('td', { 'data-label': 'Time' }, timeFromMs(b.time_ms)),
    el('td', { 'data-label': 'Transactions', class: 'num' }, String(b.tx_count)),
    el('td', { 'data-label': 'Hash' }, el('code', { class: 'hex', title: b.hash }, shortHex(b.hash))))));
  return el('table', { class: 'data-table', id: 'blocks-table' },
    el('caption', { class: 'visually-hidden' }, caption),
    el('thead', {}, el('tr', {},
      el('th', { scope: 'col' }, 'Block'), el('th', { scope: 'col' }, 'Time'),
      el('th', { scope: 'col', class: 'num' }, 'Transactions'), el('th', { scope: 'col' }, 'Hash'))),
    body);
}

async function showBlocks(before) {
  const q = new URLSearchParams({ limit: String(BLOCKS_PER_PAGE) });
  if (before !== null) q.set('before', String(before));
  const data = await api('GET', `/api/ledger/blocks?${q}`);
  const blocks = data.blocks || [];
  const heading = before === null ? 'Latest blocks' : `Blocks before block ${before}`;
  const sec = section('blocks-heading', heading);
  if (blocks.length) sec.append(blocksTable(blocks, `${heading}, newest first`));
  else sec.append(el('p', { class: 'empty' }, 'No blocks here.'));
  const pager = el('nav', { class: 'pager', 'aria-label': 'Block pages' });
  if (before !== null) pager.append(el('a', { href: '/ledger', id: 'newest-link' }, 'Newest blocks'));
  const lowest = blocks.length ? blocks[blocks.length - 1].height : null;
  if (lowest !== null && lowest > 0) {
    pager.append(el('a', { href: `/ledger?before=${lowest}`, id: 'older-link', rel: 'next' }, 'Older blocks'));
  }
  if (pager.childNodes.length) sec.append(pager);
  return sec;
}

async function showOverview() {
  setTitle(null);
  const [head, orgs, blocks] = await Promise.all([
    api('GET', '/api/ledger'), api('GET', '/api/ledger/orgs'), showBlocks(null)]);
  const b = head.tree_head;
  const t = head.totals || {};
  const headSec = section('head-heading', 'Latest signed tree head',
    el('p', {}, 'The newest block header, signed by the node. Its root covers every transaction so far.'),
    facts([
      ['Block', el('a', { href: blockHref(b.height), id: 'head-height' }, String(b.height))],
      ['Time', timeFromMs(b.time_ms)],
      ['Tree size', `${b.tree_size.toLocaleString()} ${b.tree_size === 1 ? 'transaction' : 'transactions'}`],
      ['Root', hexCode(b.root)],
      ['Node key', el('code', { class: 'hex', id: 'node-key' }, head.node_key)],
    ]));
  headSec.id = 'tree-head';
  const totals = section('totals-heading', 'Totals', facts([
    ['Tokens issued', tokens(t.minted)],
    ['Tokens redeemed', tokens(t.burned)],
    ['Tokens in wallets', tokens(t.supply)],
    ['Wallets', (t.wallets ?? 0).toLocaleString()],
    ['Active consents', (t.consents_active ?? 0).toLocaleString()],
  ]));
  totals.id = 'totals';
  const list = orgs.organisations || [];
  const orgSec = section('orgs-heading', 'Organisations');
  orgSec.id = 'organisations';
  if (list.length) {
    orgSec.append(el('ul', { class: 'plain-list org-list' }, ...list.map((o) => el('li', {},
      el('strong', {}, o.name), ' — registered in ', blockLink(o.registered_block), el('br'), hexCode(o.key)))));
  } else {
    orgSec.append(el('p', { class: 'empty' }, 'No organisations are registered yet.'));
  }
  view.replaceChildren(el('div', { class: 'grid ledger-summary' }, headSec, totals), blocks, orgSec);
}

// ---------------------------------------------------------------- block

function txItem(tx) {
  const summary = txSummary(tx);
  return el('li', { class: 'tx', 'data-kind': tx.kind, 'data-txid': tx.txid },
    el('div', { class: 'record-head' },
      el('span', { class: 'tag' }, kindLabel(tx.kind)),
      txLink(tx.txid)),
    el('p', { class: 'record-dates' }, `Leaf ${tx.leaf_index} · signed by `,
      el('code', { class: 'hex', title: tx.signer }, shortHex(tx.signer)), summary ? ` · ${summary}` : ''));
}

async function showBlock(height, offset) {
  setTitle(`Block ${height}`);
  const [data, head] = await Promise.all([
    api('GET', `/api/ledger/blocks/${height}${offset ? `?offset=${offset}` : ''}`), api('GET', '/api/ledger')]);
  const b = data.block;
  const txs = data.transactions || [];
  const top = head.tree_head.height;
  const sec = section('block-heading', `Block ${b.height}`, facts([
    ['Time', timeFromMs(b.time_ms)],
    ['Transactions', String(b.tx_count)],
    ['Tree size after this block', String(b.tree_size)],
    ['Root', hexCode(b.root)],
    ['Block hash', hexCode(b.hash)],
    ['Previous block hash', b.height > 0 ? el('a', { href: blockHref(b.height - 1), class: 'hex' }, b.prev) : hexCode(b.prev)],
    ['Signed by node', hexCode(b.proposer)],
    ['Signature', hexCode(b.signature)],
  ]));
  sec.id = 'block-detail';
  const around = el('nav', { class: 'pager', 'aria-label': 'Neighbouring blocks' });
  if (b.height > 0) around.append(el('a', { href: blockHref(b.height - 1), rel: 'prev' }, `Previous block (${b.height - 1})`));
  if (b.height < top) around.append(el('a', { href: blockHref(b.height + 1), rel: 'next' }, `Next block (${b.height + 1})`));
  sec.append(around);

  const first = offset + 1;
  const last = offset + txs.length;
  const txSec = section('tx-heading', 'Transactions in this block',
    el('p', {}, txs.length ? `Showing ${first}–${last} of ${b.tx_count}.` : 'No transactions on this page.'),
    el('ul', { class: 'record-list tx-list', id: 'tx-list' }, ...txs.map(txItem)));
  const pages = el('nav', { class: 'pager', 'aria-label': 'Transaction pages' });
  const pageHref = (o) => `${blockHref(b.height)}${o ? `&offset=${o}` : ''}`;
  if (offset > 0) pages.append(el('a', { href: pageHref(Math.max(0, offset - TX_PER_PAGE)) }, 'Previous transactions'));
  if (last < b.tx_count) pages.append(el('a', { href: pageHref(offset + TX_PER_PAGE) }, 'More transactions'));
  if (pages.childNodes.length) txSec.append(pages);
  view.replaceChildren(sec, txSec);
}

// ---------------------------------------------------------------- transaction

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function toHex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', all));
}

// RFC 9162 §2.1.3.2: recompute the root from the transaction bytes and the
// audit path. Checks the Merkle part only; the tree head's signature is
// checked by `caresync ledger verify-proof`.
async function merkleCheck(proof) {
  if (!globalThis.crypto?.subtle) return null;
  const root = proof.tree_head?.block?.root;
  if (!proof.tx || !root || typeof proof.leaf_index !== 'number' || typeof proof.tree_size !== 'number') return null;
  let r = await sha256(new Uint8Array([0]), hexBytes(proof.tx));
  if (toHex(r) !== proof.txid) return false;
  let fn = proof.leaf_index;
  let sn = proof.tree_size - 1;
  if (fn > sn) return false;
  const odd = (n) => n % 2 === 1;
  const half = (n) => Math.floor(n / 2);
  for (const hex of proof.path || []) {
    const p = hexBytes(hex);
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = await sha256(new Uint8Array([1]), p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = await sha256(new Uint8Array([1]), r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && toHex(r) === root;
}

async function showTx(txid) {
  setTitle(`Transaction ${shortHex(txid)}`);
  lookup.elements.namedItem('tx').value = txid;
  const [data, proofData, head] = await Promise.all([
    api('GET', `/api/ledger/tx/${txid}`), api('GET', `/api/ledger/proof/${txid}`), api('GET', '/api/ledger')]);
  const tx = data.transaction;
  const proof = proofData.proof;
  const txSec = section('txd-heading', kindLabel(tx.kind), facts([
    ['Transaction id', el('code', { class: 'hex', id: 'tx-id' }, tx.txid)],
    ['Kind', el('span', { id: 'tx-kind', 'data-kind': tx.kind }, kindLabel(tx.kind))],
    ['In block', el('a', { href: blockHref(tx.block) }, String(tx.block))],
    ['Leaf index', String(tx.leaf_index)],
    ['Signed by', hexCode(tx.signer)],
    ['Signer’s sequence number', String(tx.nonce)],
    ...txDetails(tx),
  ]));
  txSec.id = 'tx-detail';

  const th = proof.tree_head?.block || {};
  const path = proof.path || [];
  const fileName = `proof-${txid.slice(0, 16)}.json`;
  const check = el('p', { class: 'proof-check', id: 'proof-check', role: 'status' }, 'Checking the proof in your browser…');
  const proofSec = section('proof-heading', 'Inclusion proof',
    el('p', {}, `This proves that the transaction is one of the ${proof.tree_size} transactions under the root the node signed in block ${th.height} `
      + `(it is leaf ${proof.leaf_index}, counting from 0). The audit path is the list of hashes needed to rebuild that root from this transaction.`),
    check,
    facts([
      ['Leaf index', String(proof.leaf_index)],
      ['Tree size', String(proof.tree_size)],
      ['Signed tree head', el('a', { href: blockHref(th.height) }, `Block ${th.height}`)],
      ['Root', hexCode(th.root || '')],
      ['Audit path', path.length
        ? el('ol', { class: 'hex-list', id: 'proof-path' }, ...path.map((h) => el('li', {}, hexCode(h))))
        : 'Empty: this is the only entry in the tree.'],
      ['Node key', hexCode(head.node_key)],
    ]),
    el('p', {}, el('a', {
      href: `/api/ledger/proof/${txid}`, download: fileName, class: 'button button-secondary', id: 'proof-download',
    }, 'Download this proof')),
    el('p', { class: 'hint' }, 'To check it yourself, without trusting this website: ',
      el('code', { class: 'hex' }, `caresync ledger verify-proof ${fileName} --node-key ${head.node_key}`)));
  proofSec.id = 'proof';
  view.replaceChildren(txSec, proofSec);

  let ok = null;
  try {
    ok = await merkleCheck(proof);
  } catch {
    ok = null;
  }
  check.classList.add(ok ? 'is-ok' : ok === false ? 'is-bad' : 'is-unknown');
  check.textContent = ok
    ? `Checked in your browser: the audit path leads from this transaction to the root signed in block ${th.height}.`
    : ok === false
      ? 'Warning: this proof does not lead to the signed root. Do not rely on it.'
      : 'Your browser could not check the proof here; use the command below.';
}

// ---------------------------------------------------------------- start

lookup.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(lookup)) return;
  location.assign(txHref(value(lookup, 'tx').trim().toLowerCase()));
});

async function route() {
  const tx = params.get('tx');
  const block = params.get('block');
  const before = params.get('before');
  if (tx !== null) {
    const id = tx.trim().toLowerCase();
    if (!HEX64.test(id)) {
      setTitle('Transaction');
      lookup.elements.namedItem('tx').value = tx;
      showError(lookup, { field: 'tx', message: 'A transaction id is 64 characters, 0–9 and a–f.' });
      view.replaceChildren();
      return;
    }
    await showTx(id);
  } else if (block !== null) {
    const h = nonNegativeInt(block);
    if (h === null) throw Object.assign(new Error('A block number is a whole number, 0 or more.'), { code: 'bad_query' });
    await showBlock(h, nonNegativeInt(params.get('offset')) ?? 0);
  } else if (before !== null) {
    const h = nonNegativeInt(before);
    if (h === null) throw Object.assign(new Error('A block number is a whole number, 0 or more.'), { code: 'bad_query' });
    setTitle(`Blocks before ${h}`);
    view.replaceChildren(await showBlocks(h));
  } else {
    await showOverview();
  }
}

try {
  await route();
  status.textContent = '';
} catch (err) {
  status.textContent = '';
  let message = err.message;
  if (err.code === 'not_found') {
    message = params.get('tx') !== null ? 'No transaction with this id is on the ledger.'
      : params.get('block') !== null ? 'There is no block with this number yet.' : err.message;
  }
  view.replaceChildren(problem(message), el('p', {}, el('a', { href: '/ledger' }, 'Back to the ledger overview')));
}
