// Screening: pick or take a photo, upload it with progress, show the top
// three conditions with their probabilities, the triage advice and the
// not-a-diagnosis notice, and save the result into the private record.
import { api, upload } from './api.js';
import { $, el } from './dom.js';
import { startPage } from './layout.js';

await startPage({ auth: 'required' });
const page = $('#screening-page');
const form = $('#screening-form');
const input = $('#photo');
const message = $('#screening-message');
const submit = $('#screening-submit');
const progressRow = $('#upload-progress-row');
const progress = $('#upload-progress');
const state = $('#upload-state');
const result = $('#result');
const saveButton = $('#save-button');
const saveMessage = $('#save-message');
const savePhoto = $('#save-photo');

let current = null;

function show(screening) {
  current = screening;
  $('#result-notice').textContent = screening.notice;
  $('#result-verdict').textContent = screening.unsure
    ? (screening.verdict === 'unsure_not_skin'
      ? 'This does not look like a photo of skin.'
      : 'The screening is unsure about this photo.')
    : `Most likely: ${screening.top[0].name} (${Math.round(screening.top[0].probability * 100)} %).`;
  const list = $('#result-top');
  list.replaceChildren(...screening.top.map((t) => {
    const pct = Math.round(t.probability * 100);
    return el('li', { 'data-condition': t.condition },
      el('span', { class: 'result-name' }, t.name),
      el('meter', { min: '0', max: '100', value: String(pct), 'aria-label': `${t.name} probability` }),
      el('span', { class: 'result-pct' }, `${pct} %`));
  }));
  $('#result-advice').textContent = screening.advice;
  $('#result-triage').textContent = screening.triage_label;
  // what the result means: how often results like it were right on photos
  // from clinics the screening never saw
  $('#result-meaning').textContent = screening.meaning || '';
  saveButton.disabled = false;
  savePhoto.disabled = false;
  savePhoto.checked = false;
  saveMessage.textContent = '';
  // an unsure result is not shared: it would add noise, not signal
  $('#share-block').hidden = screening.unsure;
  $('#share-button').disabled = false;
  $('#share-button').dataset.id = screening.id;
  $('#share-message').textContent = '';
  result.hidden = false;
  $('#result-heading').focus();
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  message.textContent = '';
  const file = input.files && input.files[0];
  if (!file) {
    message.textContent = input.dataset.error;
    input.focus();
    return;
  }
  const body = new FormData();
  body.append('photo', file, file.name || 'photo.jpg');
  submit.disabled = true;
  result.hidden = true;
  progressRow.hidden = false;
  progress.value = 0;
  state.textContent = 'Uploading…';
  try {
    const data = await upload('/api/screenings', body, (f) => {
      progress.value = Math.round(f * 100);
      if (f >= 1) state.textContent = 'Looking at the photo…';
    });
    state.textContent = 'Done.';
    show(data.screening);
  } catch (err) {
    state.textContent = '';
    progressRow.hidden = true;
    message.textContent = err.message;
    input.focus();
  } finally {
    submit.disabled = false;
  }
});

saveButton.addEventListener('click', async () => {
  if (!current) return;
  saveButton.disabled = true;
  savePhoto.disabled = true;
  try {
    await api('POST', `/api/screenings/${encodeURIComponent(current.id)}/save`, { with_photo: savePhoto.checked });
    saveMessage.replaceChildren(savePhoto.checked ? 'Saved with the photo to ' : 'Saved to ',
      el('a', { href: '/records' }, 'your records'), '.');
  } catch (err) {
    saveMessage.textContent = err.message;
    saveButton.disabled = false;
    savePhoto.disabled = false;
  }
});

const shareButton = $('#share-button');
const shareMessage = $('#share-message');
shareButton.addEventListener('click', async () => {
  if (!current) return;
  shareButton.disabled = true;
  try {
    const r = await api('POST', `/api/screenings/${encodeURIComponent(current.id)}/contribute`, {});
    const c = r.contribution;
    // Rewards go to the ledger in batches, so the public ledger never shows
    // when one person shared (docs/SURVEILLANCE.md).
    const paid = r.payment.status === 'paid'
      ? `You earned ${r.reward} tokens (`
      : `You will earn ${r.reward} tokens when the next batch of ${r.payment.batch} shared results is written to the ledger (`;
    shareMessage.replaceChildren(`Shared: ${c.condition} in ${c.region}, week ${c.week}, age ${c.age_band}. `,
      paid, el('a', { href: '/wallet' }, 'wallet'), ').');
  } catch (err) {
    const hint = err.code === 'consent_required' ? el('a', { href: '/consents' }, 'Give a consent')
      : err.code === 'region_required' ? el('a', { href: '/profile' }, 'Set your home region') : null;
    shareMessage.replaceChildren(err.message, ...(hint ? [' ', hint, '.'] : []));
    shareButton.disabled = err.code === 'already_shared' || err.code === 'unsure_result';
  }
});

page.hidden = false;
