// Profile: display name, birth year, sex and home region (country, then an
// ISO 3166-2 subdivision from /api/regions).
import { api } from './api.js';
import { $, el } from './dom.js';
import { showStaffNotice, startPage } from './layout.js';
import { showError, showOk, submitting, validate, value } from './forms.js';

const user = await startPage({ auth: 'required' });
const page = $('#profile-page');
const form = $('#profile-form');
const country = $('#profile-country');
const region = $('#profile-region');
const regionHint = $('#profile-region-hint');
const birthYear = form.elements.namedItem('birth_year');
birthYear.max = String(new Date().getFullYear());

let countries = [];

function fillCountries(list) {
  countries = list;
  country.replaceChildren(el('option', { value: '' }, 'Not set'),
    ...list.map((c) => el('option', { value: c.code }, c.name)));
}

// Fill the subdivision select for a country; options grouped by type when there are several.
async function loadSubdivisions(code, selected = '') {
  region.replaceChildren(el('option', { value: '' }, code ? 'Choose a region' : 'Not set'));
  region.disabled = true;
  if (!code) {
    regionHint.textContent = 'Choose a country first.';
    return;
  }
  regionHint.textContent = 'Loading regions…';
  const data = await api('GET', `/api/regions?country=${encodeURIComponent(code)}`);
  if (country.value !== code) return; // the person picked another country meanwhile
  const subs = Array.isArray(data.subdivisions) ? data.subdivisions : [];
  const types = [...new Set(subs.map((s) => s.type || ''))];
  const option = (s) => el('option', { value: s.code }, s.name);
  if (types.length > 1) {
    for (const t of types) {
      region.append(el('optgroup', { label: t || 'Other' }, ...subs.filter((s) => (s.type || '') === t).map(option)));
    }
  } else {
    region.append(...subs.map(option));
  }
  region.disabled = false;
  region.value = selected;
  const name = countries.find((c) => c.code === code)?.name || code;
  regionHint.textContent = `${subs.length} regions in ${name}.`;
}

function fill(profile) {
  form.elements.namedItem('display_name').value = profile.display_name ?? '';
  birthYear.value = profile.birth_year ?? '';
  form.elements.namedItem('sex').value = profile.sex ?? '';
}

async function showRegion(code) {
  const cc = code ? code.split('-')[0] : '';
  country.value = countries.some((c) => c.code === cc) ? cc : '';
  await loadSubdivisions(country.value, code || '');
}

country.addEventListener('change', () => {
  loadSubdivisions(country.value).catch((err) => showError(form, err));
});

const rules = [
  (f) => (value(f, 'country') && !value(f, 'region')
    ? { field: 'region', message: 'Choose a region in that country, or set the country to “Not set”.' } : null),
];

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(form, rules)) return;
  const name = value(form, 'display_name').trim();
  const year = value(form, 'birth_year');
  const body = {
    display_name: name || null,
    birth_year: year ? Number(year) : null,
    sex: value(form, 'sex') || null,
    region: value(form, 'region') || null,
  };
  submitting(form, async () => {
    const data = await api('PUT', '/api/profile', body);
    fill(data.profile);
    showOk(form, 'Profile saved.');
  });
});

try {
  const [profile, regions] = await Promise.all([api('GET', '/api/profile'), api('GET', '/api/regions')]);
  fillCountries(Array.isArray(regions.countries) ? regions.countries : []);
  fill(profile.profile || {});
  page.hidden = false;
  await showRegion(profile.profile?.region);
} catch (err) {
  page.hidden = false;
  if (err.code === 'forbidden') showStaffNotice(page, user, 'Profiles');
  else if (err.code === 'unauthenticated') location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
  else showError(form, err);
}
