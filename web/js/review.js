// The clinician's review queue: the organisation's waiting cases oldest
// first (waiting time, time left), one case opened (photo, the screening's
// result, the extras the person shared), answered with a coded condition
// (the screening's table, or "other" named in words), an urgency and advice,
// or returned with a reason. Other accounts get a notice instead.
import { api } from './api.js';
import { $, el } from './dom.js';
import { startPage } from './layout.js';
import { clearErrors, showError, submitting, validate, value } from './forms.js';
import { confirmInline, tokens } from './ledger-ui.js';
import { casePhoto, duration, extrasEl } from './review-ui.js';

const user = await startPage({ auth: 'required' });
const page = $('#review-page');
const message = $('#review-message');
const queueStatus = $('#queue-status');
const queueTable = $('#queue-table');
const queueBody = $('#queue-body');
const card = $('#case-card');
const answerForm = $('#answer-form');
const returnForm = $('#return-form');
const conditionSelect = $('#answer-condition');
const otherField = $('#answer-other-field');

let queue = [];
let current = null; // {id, price} of the open case

function notice(title, text) {
  page.replaceChildren(el('div', { class: 'notice', role: 'status', id: 'review-notice' },
    el('h2', {}, title), el('p', {}, text)));
  page.hidden = false;
}

function queueRow(item, index) {
  const open = el('button', { type: 'button', class: 'button-small open-case', 'data-id': item.id,
    'aria-label': `Open case ${index + 1}, waiting for ${duration(item.waiting_seconds)}` }, 'Open case');
  open.addEventListener('click', () => openCase(item));
  const left = Number(item.seconds_left);
  return el('tr', { 'data-id': item.id },
    el('td', { 'data-label': 'Case' }, el('code', { class: 'hex' }, item.id.slice(0, 8))),
    el('td', { 'data-label': 'Waiting for', class: 'waiting' }, duration(item.waiting_seconds)),
    el('td', { 'data-label': 'Time left', class: `time-left${left < 3600 ? ' time-short' : ''}` },
      left > 0 ? duration(left) : 'due now'),
    el('td', { 'data-label': 'Price', class: 'num' }, tokens(item.price)),
    el('td', { 'data-label': 'Open' }, open));
}

async function loadQueue() {
  queueTable.setAttribute('aria-busy', 'true');
  try {
    const data = await api('GET', '/api/review/queue');
    queue = Array.isArray(data.queue) ? data.queue : [];
  } finally {
    queueTable.removeAttribute('aria-busy');
  }
  queueBody.replaceChildren(...queue.map(queueRow));
  queueTable.hidden = queue.length === 0;
  queueStatus.textContent = queue.length
    ? `${queue.length} waiting ${queue.length === 1 ? 'case' : 'cases'}, oldest first.`
    : 'No case is waiting.';
}

function closeCase(focusQueue = true) {
  current = null;
  card.hidden = true;
  answerForm.reset();
  returnForm.reset();
  clearErrors(answerForm);
  clearErrors(returnForm);
  otherField.hidden = true;
  if (focusQueue) $('#queue-heading').focus();
}

async function openCase(item) {
  message.textContent = '';
  let data;
  try {
    data = await api('GET', `/api/review/cases/${encodeURIComponent(item.id)}`);
  } catch (err) {
    if (err.code === 'not_found') {
      await loadQueue();
      message.textContent = 'That case is no longer waiting (the person withdrew it, or its time ran out); the queue has been refreshed.';
      return;
    }
    fail(err);
    return;
  }
  const c = data.case;
  closeCase(false);
  current = { id: c.id, price: item.price };
  $('#case-heading').textContent = `Case ${c.id.slice(0, 8)} · ${tokens(item.price)}`;
  $('#case-photo-box').replaceChildren(casePhoto(c.photo_jpeg_base64url, 'The photo the person shared'));
  $('#case-title').textContent = c.result?.title || '';
  $('#case-details').textContent = c.result?.details || '';
  $('#case-extras').replaceChildren(extrasEl(c.share));
  card.hidden = false;
  $('#case-heading').focus();
}

conditionSelect.addEventListener('change', () => {
  otherField.hidden = conditionSelect.value !== 'other';
  $('#answer-other').required = conditionSelect.value === 'other';
});

const answerRules = [
  (f) => (f.querySelector('input[name="urgency"]:checked') ? null : { field: 'urgency', message: 'Choose how urgent it is.' }),
];

// The module's refusals: a case that is gone is no longer waiting.
async function caseGone(err, form) {
  if (err.code !== 'not_found') return false;
  closeCase();
  await loadQueue();
  showError(form, err, '');
  message.textContent = 'That case is no longer waiting (withdrawn by the person, or its time ran out); the queue has been refreshed.';
  return true;
}

answerForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!current || !validate(answerForm, answerRules)) return;
  const urgency = answerForm.querySelector('input[name="urgency"]:checked').value;
  const body = { condition: value(answerForm, 'condition'), urgency, advice: value(answerForm, 'advice').trim() };
  if (body.condition === 'other') body.other = value(answerForm, 'other').trim();
  const { id, price } = current;
  submitting(answerForm, async () => {
    try {
      await api('POST', `/api/review/cases/${encodeURIComponent(id)}/answer`, body);
    } catch (err) {
      if (await caseGone(err, answerForm)) return;
      if (err.field === 'urgency') err.field = null;
      throw err;
    }
    closeCase();
    await loadQueue();
    message.textContent = `Answered. The person sees your answer now, and ${tokens(price)} are paid to your organisation.`;
  });
});

returnForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!current || !validate(returnForm)) return;
  const { id } = current;
  const ok = await confirmInline(returnForm.querySelector('.form-actions'), {
    question: 'Return this case? The person gets their tokens back and the case copy is destroyed.',
    yes: 'Yes, return it', no: 'Cancel',
  });
  if (!ok) {
    $('#return-submit').focus();
    return;
  }
  await submitting(returnForm, async () => {
    try {
      await api('POST', `/api/review/cases/${encodeURIComponent(id)}/return`, { reason: value(returnForm, 'reason').trim() });
    } catch (err) {
      if (await caseGone(err, returnForm)) return;
      throw err;
    }
    closeCase();
    await loadQueue();
    message.textContent = 'Returned. The person’s tokens were given back.';
  });
});

$('#case-close').addEventListener('click', () => closeCase());

$('#queue-refresh').addEventListener('click', async () => {
  try {
    await loadQueue();
    message.textContent = 'Queue refreshed.';
  } catch (err) {
    fail(err);
  }
});

function fail(err) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (err.code === 'forbidden') {
    notice('The review queue is for clinicians', 'Your account cannot review cases.');
    return;
  }
  message.textContent = err.message;
}

if (!user || user.role !== 'clinician') {
  notice('The review queue is for clinicians',
    `You are signed in as ${user ? `${user.username} (${user.role})` : 'someone else'}. Only clinicians of an organisation `
    + 'that offers review see its cases. To ask a clinician about a skin check you saved, use the Reviews page of a personal account.');
} else if (!user.organisation) {
  notice('Your account is not linked to an organisation',
    'Cases go to an organisation, not to one clinician. Ask an administrator to link your account to your organisation.');
} else {
  try {
    const cond = await api('GET', '/api/review/conditions');
    const list = Array.isArray(cond.conditions) ? cond.conditions : [];
    conditionSelect.replaceChildren(el('option', { value: '' }, 'Choose…'),
      ...list.filter((c) => c.code !== 'other').map((c) => el('option', { value: c.code }, c.name)),
      el('option', { value: 'other' }, 'Another condition (name it)'));
    page.hidden = false;
    queueStatus.textContent = 'Loading the queue…';
    await loadQueue();
  } catch (err) {
    page.hidden = false;
    queueStatus.textContent = '';
    fail(err);
  }
}
