// The person's health record entries: list, add, edit, delete.
import { api } from './api.js';
import { $, el, today } from './dom.js';
import { showStaffNotice, startPage } from './layout.js';
import { clearErrors, showError, showOk, submitting, validate, value } from './forms.js';
import { STATE_LABEL, URGENCY_LABEL } from './review-ui.js';

const KIND_LABEL = {
  condition: 'Condition', symptom: 'Symptom', medication: 'Medication', allergy: 'Allergy', note: 'Note',
};
const KIND_PLURAL = {
  condition: 'conditions', symptom: 'symptoms', medication: 'medications', allergy: 'allergies', note: 'notes',
};

const user = await startPage({ auth: 'required' });
const page = $('#records-page');
const list = $('#record-list');
const listStatus = $('#list-status');
const listForm = $('#list-message').parentElement;
const filter = $('#kind-filter');
const form = $('#record-form');
const heading = $('#form-heading');
const submit = $('#record-submit');
const cancel = $('#record-cancel');

let records = [];
let editing = null; // id of the record in the form, or null when adding
// Clinician review of saved screenings: record id → its newest request
// (with the answer once answered), and the condition table's names.
let reviews = new Map();
let conditionNames = new Map();

for (const name of ['onset', 'ended']) form.elements.namedItem(name).max = today();

// The coded form of a condition or symptom (a code of the screening's
// condition table): what a data request matches on and, if the person
// accepts, shares instead of the entry's words. Other kinds carry none.
const codeField = $('#record-code-field');
const codeSelect = $('#record-code');
const CODED = new Set(['condition', 'symptom']);

function showCodeField() {
  codeField.hidden = !CODED.has(value(form, 'kind'));
}

function fillCodes() {
  const keep = codeSelect.value;
  codeSelect.replaceChildren(el('option', { value: '' }, 'None'),
    ...[...conditionNames].map(([code, name]) => el('option', { value: code }, name)));
  setCode(keep);
}

// An entry may carry a code this page's list lacks (the table changed, or
// the list could not be read): kept as its own option, not dropped on save.
function setCode(code) {
  if (code && ![...codeSelect.options].some((o) => o.value === code)) {
    codeSelect.append(el('option', { value: code }, code));
  }
  codeSelect.value = code || '';
}

form.elements.namedItem('kind').addEventListener('change', showCodeField);
showCodeField();

function formatDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso || '');
  if (!m) return iso;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

function timeEl(iso) {
  return el('time', { datetime: iso }, formatDate(iso));
}

function datesLine(r) {
  const p = el('p', { class: 'record-dates' });
  if (r.onset) p.append('Started ', timeEl(r.onset));
  if (r.ended) p.append(r.onset ? ' · ended ' : 'Ended ', timeEl(r.ended));
  else if (r.onset && r.kind !== 'note') p.append(' · ongoing');
  if (r.updated_at) {
    if (p.childNodes.length) p.append(' · ');
    p.append('updated ', timeEl(r.updated_at.slice(0, 10)));
  }
  return p;
}

function actionsFor(r, li) {
  const box = el('div', { class: 'record-actions' });
  const edit = el('button', { type: 'button', class: 'button-secondary button-small', 'aria-label': `Edit “${r.title}”` }, 'Edit');
  const del = el('button', { type: 'button', class: 'button-secondary button-small', 'aria-label': `Delete “${r.title}”` }, 'Delete');
  edit.addEventListener('click', () => startEdit(r));
  del.addEventListener('click', () => confirmDelete(r, li, box));
  box.append(edit, del);
  // A saved skin check with its photo can go to a clinician (web/reviews.html).
  if (r.photo) {
    box.append(el('a', { class: 'button button-secondary button-small ask-clinician', href: `/reviews?record=${encodeURIComponent(r.id)}`,
      'aria-label': `Ask a clinician about “${r.title}”` }, 'Ask a clinician'));
  }
  return box;
}

// The review a saved screening went for, in the entry itself: its state,
// and once answered the clinician's answer beside the model's result. The
// full story (openings, ledger, withdraw) stays on /reviews.
function reviewOf(r) {
  const q = reviews.get(r.id);
  if (!q) return null;
  const box = el('section', { class: 'record-review', 'data-request': q.id, 'data-state': q.state,
    'aria-label': `Clinician review of “${r.title}”` });
  box.append(el('div', { class: 'record-head' },
    el('span', { class: `tag review-state status-${q.state}` }, STATE_LABEL[q.state] || q.state),
    el('h4', { class: 'record-review-title' }, 'Clinician review')));
  if (q.answer) {
    const a = q.answer;
    const model = el('div', { class: 'review-side', role: 'group', 'aria-label': 'What the screening said' },
      el('h5', {}, 'What the screening said'),
      el('p', { class: 'preview-title model-title' }, (r.result && r.result.title) || r.title));
    // The model's words are the entry's own text unless the person has
    // edited it since: repeat them only then.
    if (r.result && r.result.details && r.result.details !== r.details) {
      model.append(el('p', { class: 'preview-details model-details' }, r.result.details));
    }
    const cond = a.condition === 'other' ? (a.other || 'Other') : (conditionNames.get(a.condition) || a.condition);
    const clinician = el('div', { class: 'review-side', role: 'group', 'aria-label': 'What the clinician said' },
      el('h5', {}, 'What the clinician said'),
      el('dl', { class: 'facts answer-facts' },
        el('dt', {}, 'Condition'), el('dd', { class: 'answer-condition', 'data-code': a.condition }, cond),
        el('dt', {}, 'Urgency'), el('dd', { class: 'answer-urgency', 'data-code': a.urgency }, URGENCY_LABEL[a.urgency] || a.urgency),
        el('dt', {}, 'Advice'), el('dd', { class: 'answer-advice' }, a.advice),
        el('dt', {}, 'Clinician'), el('dd', { class: 'answer-clinician' }, a.clinician)));
    box.append(el('div', { class: 'review-compare' }, model, clinician));
  } else if (q.state === 'waiting') {
    const note = el('p', { class: 'record-review-note' }, 'A clinician has not answered yet');
    const due = new Date(q.answer_due);
    if (!Number.isNaN(due.getTime())) {
      note.append('; the answer is due by ', el('time', { datetime: q.answer_due }, due.toLocaleString(undefined, {
        year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })));
    }
    note.append('.');
    box.append(note);
  }
  box.append(el('p', { class: 'record-review-link' }, el('a', { href: `/reviews#request-${q.id}` }, 'See this review in Reviews')));
  return box;
}

function confirmDelete(r, li, box) {
  const question = el('span', { class: 'record-confirm' }, 'Delete this entry for good?');
  const yes = el('button', { type: 'button', class: 'button-danger button-small' }, 'Yes, delete');
  const no = el('button', { type: 'button', class: 'button-secondary button-small' }, 'Keep it');
  const confirmBox = el('div', { class: 'record-actions', role: 'group', 'aria-label': `Confirm deleting “${r.title}”` }, question, yes, no);
  no.addEventListener('click', () => {
    confirmBox.replaceWith(box);
    box.querySelector('button:last-child').focus();
  });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    no.disabled = true;
    try {
      await api('DELETE', `/api/records/${encodeURIComponent(r.id)}`);
      if (editing === r.id) stopEdit();
      await load();
      showOk(listForm, `Deleted “${r.title}”.`);
      $('#list-heading').focus();
    } catch (err) {
      handle(err, listForm);
      yes.disabled = false;
      no.disabled = false;
    }
  });
  box.replaceWith(confirmBox);
  no.focus();
}

function render() {
  const kind = filter.value;
  const shown = kind ? records.filter((r) => r.kind === kind) : records;
  list.replaceChildren(...shown.map((r) => {
    const li = el('li', { class: `record record-kind-${r.kind}`, 'data-id': r.id });
    li.append(
      el('div', { class: 'record-head' },
        el('span', { class: 'tag' }, KIND_LABEL[r.kind] || r.kind),
        el('h3', { class: 'record-title' }, r.title)),
      datesLine(r));
    if (r.code) {
      li.append(el('p', { class: 'record-code', 'data-code': r.code },
        'Coded as ', el('strong', {}, conditionNames.get(r.code) || r.code), ' (data requests can match this)'));
    }
    if (r.details) li.append(el('p', { class: 'record-details' }, r.details));
    if (r.photo) {
      li.append(el('img', {
        class: 'record-photo', src: `/api/records/${encodeURIComponent(r.id)}/photo`,
        alt: 'The photo saved with this entry', width: '224', height: '224', loading: 'lazy',
      }));
    }
    const review = reviewOf(r);
    if (review) li.append(review);
    li.append(actionsFor(r, li));
    return li;
  }));
  if (!records.length) listStatus.textContent = 'No entries yet. Add your first one with the form.';
  else if (!shown.length) listStatus.textContent = `No ${KIND_PLURAL[kind]} yet.`;
  else listStatus.textContent = `${shown.length} ${shown.length === 1 ? 'entry' : 'entries'}`;
}

function handle(err, where) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (err.code === 'forbidden') {
    showStaffNotice(page, user, 'Health records');
    return;
  }
  showError(where, err);
}

// Each saved screening's review request (the list is newest first and
// names the record it came from): the newest answered one, since the
// answer is what the entry is for, else the newest; with the answer read
// for the answered ones. Reviews are extra: if they cannot be read the
// entries still show.
async function loadReviews() {
  const next = new Map();
  const ids = new Set(records.filter((r) => r.photo).map((r) => r.id));
  if (!ids.size) return next;
  const [data, cond] = await Promise.all([
    api('GET', '/api/review/requests'),
    conditionNames.size ? null : api('GET', '/api/review/conditions'),
  ]);
  if (cond) {
    conditionNames = new Map((cond.conditions || []).map((c) => [c.code, c.name]));
    fillCodes();
  }
  for (const q of Array.isArray(data.requests) ? data.requests : []) {
    if (!q.record_id || !ids.has(q.record_id)) continue;
    const had = next.get(q.record_id);
    if (!had || (had.state !== 'answered' && q.state === 'answered')) next.set(q.record_id, q);
  }
  await Promise.all([...next].filter(([, q]) => q.state === 'answered').map(async ([rid, q]) => {
    const one = await api('GET', `/api/review/requests/${encodeURIComponent(q.id)}`);
    next.set(rid, one.request);
  }));
  return next;
}

// The condition table for the code select; entries still show without it.
async function loadConditions() {
  if (conditionNames.size) return;
  const cond = await api('GET', '/api/review/conditions');
  conditionNames = new Map((cond.conditions || []).map((c) => [c.code, c.name]));
  fillCodes();
}

async function load() {
  await loadConditions().catch(() => {});
  const data = await api('GET', '/api/records');
  records = Array.isArray(data.records) ? data.records : [];
  reviews = await loadReviews().catch(() => reviews);
  render();
}

function startEdit(r) {
  editing = r.id;
  clearErrors(form);
  form.elements.namedItem('kind').value = r.kind;
  form.elements.namedItem('title').value = r.title || '';
  form.elements.namedItem('onset').value = r.onset || '';
  form.elements.namedItem('ended').value = r.ended || '';
  form.elements.namedItem('details').value = r.details || '';
  setCode(r.code);
  showCodeField();
  heading.textContent = 'Edit entry';
  submit.textContent = 'Save changes';
  cancel.hidden = false;
  form.scrollIntoView({ block: 'nearest' });
  form.elements.namedItem('title').focus();
}

function stopEdit() {
  editing = null;
  form.reset();
  showCodeField();
  clearErrors(form);
  heading.textContent = 'Add an entry';
  submit.textContent = 'Add entry';
  cancel.hidden = true;
}

cancel.addEventListener('click', () => {
  const id = editing;
  stopEdit();
  const item = id && list.querySelector(`li[data-id="${CSS.escape(id)}"] button`);
  (item || form.elements.namedItem('kind')).focus();
});

filter.addEventListener('change', render);

const rules = [
  (f) => (value(f, 'kind') === 'symptom' && !value(f, 'onset')
    ? { field: 'onset', message: 'A symptom needs the date it started.' } : null),
  (f) => (value(f, 'onset') && value(f, 'ended') && value(f, 'ended') < value(f, 'onset')
    ? { field: 'ended', message: 'The end date cannot be before the start date.' } : null),
];

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(form, rules)) return;
  const body = {
    kind: value(form, 'kind'),
    title: value(form, 'title').trim(),
    details: value(form, 'details').trim() || null,
    onset: value(form, 'onset') || null,
    ended: value(form, 'ended') || null,
  };
  if (CODED.has(body.kind) && value(form, 'code')) body.code = value(form, 'code');
  submitting(form, async () => {
    try {
      if (editing) await api('PUT', `/api/records/${encodeURIComponent(editing)}`, body);
      else await api('POST', '/api/records', body);
    } catch (err) {
      if (err.code === 'unauthenticated' || err.code === 'forbidden') {
        handle(err, form);
        return;
      }
      if (err.code === 'not_found' && editing) {
        stopEdit();
        await load();
        err.message = 'That entry no longer exists; the list has been refreshed.';
      }
      throw err;
    }
    const wasEditing = Boolean(editing);
    stopEdit();
    await load();
    showOk(form, wasEditing ? `Saved “${body.title}”.` : `Added “${body.title}”.`);
  });
});

$('#list-heading').setAttribute('tabindex', '-1');
try {
  page.hidden = false;
  listStatus.textContent = 'Loading your entries…';
  await load();
} catch (err) {
  listStatus.textContent = '';
  handle(err, listForm);
}
