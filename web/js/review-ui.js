// Shared by the person's reviews page and the clinician's queue: plain
// words for the review API's codes (states, urgencies, the optional extras
// a person shares), times, and the case copy's photo.
import { el } from './dom.js';

export const STATE_LABEL = {
  waiting: 'Waiting for a clinician',
  answered: 'Answered',
  withdrawn: 'Withdrawn by you',
  returned: 'Returned by the clinician',
  expired: 'Expired: not answered in time',
};

export const URGENCY_LABEL = {
  self_care: 'Self-care is enough',
  pharmacist_or_gp: 'See a pharmacist or GP',
  see_doctor_soon: 'See a doctor soon',
  urgent: 'Urgent: get care today',
};

const EXTRA_FIELDS = [
  ['age_band', 'Age band'], ['sex', 'Sex'], ['body_site', 'Where on the body'], ['duration', 'How long'], ['note', 'Note'],
];

const EXTRA_VALUE = {
  sex: { female: 'Female', male: 'Male', other: 'Other' },
  body_site: {
    head_neck: 'Head or neck', trunk: 'Chest, belly or back', arm: 'Arm', hand: 'Hand', leg: 'Leg', foot: 'Foot',
    genital: 'Genital area', other: 'Somewhere else',
  },
  duration: { days: 'Days', weeks: 'Weeks', months: 'Months', years: 'Years' },
  age_band: { '0-17': '0–17', '18-29': '18–29', '30-44': '30–44', '45-59': '45–59', '60-74': '60–74', '75+': '75 or over' },
};

// [[label, value in words]…] for the extras present in share (API codes).
export function extrasList(share) {
  const out = [];
  for (const [key, label] of EXTRA_FIELDS) {
    const v = share && share[key];
    if (typeof v === 'string' && v) out.push([key, label, (EXTRA_VALUE[key] && EXTRA_VALUE[key][v]) || v]);
  }
  return out;
}

// <ul> of the extras, or a line saying none were shared.
export function extrasEl(share, cls = 'preview-extras') {
  const items = extrasList(share);
  if (!items.length) return el('p', { class: 'empty' }, 'No extras shared.');
  return el('ul', { class: cls }, ...items.map(([key, label, v]) => el('li', { 'data-extra': key },
    el('span', { class: 'extra-label' }, `${label}: `), v)));
}

// RFC 3339 → <time> with date and time in the reader's locale.
export function when(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return el('span', {}, iso || '—');
  return el('time', { datetime: iso }, d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  }));
}

// 7260 → "2 h 1 min"; under a minute → "under a minute".
export function duration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  if (s < 60) return 'under a minute';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = [];
  if (d) parts.push(`${d} d`);
  if (h) parts.push(`${h} h`);
  if (m && !d) parts.push(`${m} min`);
  return parts.join(' ');
}

// The case copy's photo (base64url JPEG) as an <img>; the CSP allows data: images.
export function casePhoto(b64url, alt) {
  const b64 = String(b64url || '').replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  return el('img', { class: 'record-photo case-photo', src: `data:image/jpeg;base64,${padded}`, alt, width: '224', height: '224' });
}
