// The one layout of every page, and page start-up. A page holds only its
// own <main> plus an empty <header class="site-header" id="site-header">
// placeholder (styled, so the band keeps its place before this runs) and one
// module script that imports this file. Importing it renders the skip link,
// the header (brand and an empty navigation) and the footer at once; then
// startPage() finds out who is logged in, fills the navigation for that role
// (marking the current page), and for private pages sends visitors to log in.
// Without JavaScript a page shows its content under an empty header band.
import { getSession, hasSessionHint, logout } from './api.js';
import { el } from './dom.js';

const FOOTER = 'CareSync keeps your health record private: it is encrypted with a key only your password or recovery code can unlock.';

// A page may carry its own <footer class="site-footer"> (the dashboard says
// where its numbers are recorded); every other page gets the common one.
function renderLayout() {
  const main = document.querySelector('main');
  let header = document.getElementById('site-header');
  if (!header) {
    header = el('header', { class: 'site-header', id: 'site-header' });
    if (main) main.before(header); else document.body.prepend(header);
  }
  header.replaceChildren(el('div', { class: 'site-header-inner' },
    el('a', { class: 'brand', href: '/' }, el('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '✚'), 'CareSync'),
    el('nav', { class: 'site-nav', id: 'site-nav', 'aria-label': 'Main' })));
  if (main && !document.querySelector('.skip-link')) {
    if (!main.id) main.id = 'main';
    header.before(el('a', { class: 'skip-link', href: `#${main.id}` }, 'Skip to content'));
  }
  if (!document.querySelector('footer.site-footer')) {
    document.body.append(el('footer', { class: 'site-footer' }, el('p', {}, FOOTER)));
  }
}

renderLayout();

// "Ledger" is the public explorer: shown to everyone.
const LINKS = {
  guest: [['/', 'Home'], ['/ledger', 'Ledger'], ['/login', 'Log in'], ['/signup', 'Create account']],
  person: [['/screening', 'Check skin'], ['/records', 'Records'], ['/reviews', 'Reviews'], ['/profile', 'Profile'], ['/consents', 'Consents'],
    ['/data-requests', 'Data requests'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
  staff: [['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
  // Only clinicians review cases (web/review.html); the queue is their first link.
  clinician: [['/review', 'Review queue'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
  analyst: [['/surveillance', 'Surveillance'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
  // An analyst an administrator put in an organisation also acts for it (issue 14).
  member: [['/surveillance', 'Surveillance'], ['/org-requests', 'Data requests'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'],
    ['/account', 'Account']],
  // Administrators see the dashboard as analysts do, and approve data requests.
  admin: [['/surveillance', 'Surveillance'], ['/admin-requests', 'Data requests'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'],
    ['/account', 'Account']],
};

function link(href, label) {
  const here = location.pathname === href || location.pathname === `${href}.html`
    || (href === '/' && location.pathname === '/index.html');
  return el('a', { href, 'aria-current': here ? 'page' : null }, label);
}

function renderNav(user) {
  const nav = document.getElementById('site-nav');
  if (!nav) return;
  const list = el('ul');
  const set = !user ? LINKS.guest : user.role === 'person' ? LINKS.person
    : user.role === 'clinician' ? LINKS.clinician
      : user.role === 'analyst' ? (user.organisation ? LINKS.member : LINKS.analyst)
        : user.role === 'admin' ? LINKS.admin : LINKS.staff;
  for (const [href, label] of set) list.append(el('li', {}, link(href, label)));
  if (user) {
    const who = el('span', { class: 'nav-user', id: 'nav-user' }, 'Signed in as ', el('strong', { text: user.username }));
    if (user.role !== 'person') who.append(` (${user.role})`);
    list.append(el('li', {}, who));
    const out = el('button', { type: 'button', class: 'link-button', id: 'logout-button' }, 'Log out');
    out.addEventListener('click', async () => {
      out.disabled = true;
      try {
        await logout();
      } catch { /* the session may already be gone; either way we are out */ }
      location.assign('/login?notice=loggedout');
    });
    list.append(el('li', {}, out));
  }
  nav.replaceChildren(list);
}

function showPageProblem(message) {
  const main = document.querySelector('main');
  if (main) main.prepend(el('p', { class: 'notice notice-warning', role: 'alert' }, message));
}

// auth: 'public' (anyone; probe the session only if a login is likely) or
// 'required' (send visitors to /login?next=...). Resolves to the user or null.
export async function startPage({ auth = 'public' } = {}) {
  let user = null;
  try {
    if (auth === 'required' || hasSessionHint()) user = await getSession();
  } catch (err) {
    showPageProblem(`Could not check whether you are logged in: ${err.message}`);
    if (auth === 'required') throw err;
  }
  if (!user && auth === 'required') {
    location.replace(`/login?next=${encodeURIComponent(location.pathname)}`);
    return new Promise(() => {}); // the page is going away
  }
  renderNav(user);
  return user;
}

// Re-render the header (e.g. after deleting the account).
export function setNavUser(user) {
  renderNav(user);
}

// Staff accounts get 403 on records/profile: replace the page body with an explanation.
export function showStaffNotice(container, user, what) {
  container.replaceChildren(
    el('div', { class: 'notice', role: 'status', id: 'staff-notice' },
      el('h2', { text: `${what} are for personal accounts` }),
      el('p', {}, `You are signed in as ${user ? user.username : 'a staff member'}`
        + `${user ? ` (${user.role})` : ''}. Staff accounts cannot view anyone's health records, `
        + 'nor keep their own. To keep a personal record, create a separate personal account.'),
      el('p', {}, el('a', { href: '/account' }, 'Go to your account settings'))));
}
