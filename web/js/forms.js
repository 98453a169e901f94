// Form helpers: client-side checks from the inputs' own constraints, errors
// in the form's aria-live message region and next to the field at fault.
import { el } from './dom.js';

function messageRegion(form) {
  return form.querySelector('.form-message');
}

export function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) p.remove();
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) {
    input.removeAttribute('aria-invalid');
    const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && !id.endsWith('-error'));
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
    else input.removeAttribute('aria-describedby');
  }
  const region = messageRegion(form);
  if (region) {
    region.textContent = '';
    region.classList.remove('is-ok');
  }
}

// Mark one field as wrong; returns true when the field exists in this form.
export function fieldError(form, name, message) {
  const input = name && form.elements ? form.elements.namedItem(name) : null;
  if (!input || !input.id) return false;
  const id = `${input.id}-error`;
  const old = document.getElementById(id);
  if (old) old.remove();
  const p = el('p', { class: 'field-error', id }, message);
  const field = input.closest('.field') || input.parentElement;
  field.append(p);
  input.setAttribute('aria-invalid', 'true');
  const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
  ids.push(id);
  input.setAttribute('aria-describedby', ids.join(' '));
  return true;
}

// Show an error (ApiError or {message, field}) in the summary and next to its field.
export function showError(form, err, message = err.message) {
  const region = messageRegion(form);
  if (region) {
    region.classList.remove('is-ok');
    region.textContent = message;
  }
  if (err.field && fieldError(form, err.field, message)) {
    form.elements.namedItem(err.field).focus();
  }
}

export function showOk(form, message) {
  const region = messageRegion(form);
  if (!region) return;
  region.textContent = message;
  region.classList.add('is-ok');
}

// Check the inputs' constraints (required, minlength, pattern, min/max...)
// and custom rules; show every problem, focus the first. Returns true if ok.
// rules: [(form) => null | {field, message}]
export function validate(form, rules = []) {
  clearErrors(form);
  const problems = [];
  for (const input of form.elements) {
    if (!input.willValidate || input.checkValidity()) continue;
    const msg = input.dataset.error || input.validationMessage;
    problems.push({ field: input.name, message: msg });
  }
  for (const rule of rules) {
    const p = rule(form);
    if (p && !problems.some((q) => q.field === p.field)) problems.push(p);
  }
  if (!problems.length) return true;
  for (const p of problems) fieldError(form, p.field, p.message);
  const region = messageRegion(form);
  if (region) {
    region.textContent = problems.length === 1
      ? problems[0].message
      : `Please fix ${problems.length} problems: ${problems.map((p) => p.message).join(' ')}`;
  }
  const first = form.elements.namedItem(problems[0].field);
  if (first && first.focus) first.focus();
  return false;
}

// Run an async submit with the submit button disabled; errors shown on the form.
export async function submitting(form, work, { describe } = {}) {
  const button = form.querySelector('button[type="submit"]');
  if (button) button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    await work();
  } catch (err) {
    showError(form, err, describe ? describe(err) : err.message);
  } finally {
    if (button) button.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

export const value = (form, name) => form.elements.namedItem(name).value;

export function samePassword(field, other) {
  return (form) => (value(form, field) !== value(form, other)
    ? { field, message: 'The two passwords do not match.' } : null);
}
