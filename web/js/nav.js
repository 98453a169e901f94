// Page start-up shared by every page: finds out who is logged in, builds the
// navigation header, and (for private pages) sends visitors to log in.
import { getSession, hasSessionHint, logout } from './api.js';
import { el } from './dom.js';

// "Ledger" is the public explorer: shown to everyone.
const LINKS = {
  guest: [['/', 'Home'], ['/ledger', 'Ledger'], ['/login', 'Log in'], ['/signup', 'Create account']],
  person: [['/screening', 'Check skin'], ['/records', 'Records'], ['/profile', 'Profile'], ['/consents', 'Consents'], ['/wallet', 'Wallet'],
    ['/ledger', 'Ledger'], ['/account', 'Account']],
  staff: [['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
  analyst: [['/surveillance', 'Surveillance'], ['/wallet', 'Wallet'], ['/ledger', 'Ledger'], ['/account', 'Account']],
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
    : user.role === 'analyst' || user.role === 'admin' ? LINKS.analyst : LINKS.staff;
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
