// What the data-request pages share: the facts list of a request, its
// inclusion criteria in words, and the plain error handling of the staff
// pages (administrators, organisations' members).
import { el } from './dom.js';

// A <dl> of [term, ...description] pairs; falsy pairs are left out.
export function facts(...pairs) {
  return el('dl', { class: 'facts' }, ...pairs.filter(Boolean)
    .flatMap(([term, ...desc]) => [el('dt', {}, term), el('dd', {}, ...desc)]));
}

export function criteriaText(c) {
  const parts = [];
  if (c && c.conditions && c.conditions.length) parts.push(`conditions ${c.conditions.join(', ')}`);
  if (c && c.countries && c.countries.length) parts.push(`countries ${c.countries.join(', ')}`);
  if (c && c.age_bands && c.age_bands.length) parts.push(`age bands ${c.age_bands.join(', ')}`);
  const text = parts.join('; ');
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : 'Anyone';
}

// Signed out: to the log-in page and back; otherwise the server's message
// in the section's message region.
export function handle(err, where) {
  if (err.code === 'unauthenticated') {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  where.classList.remove('is-ok');
  where.textContent = err.message;
}
