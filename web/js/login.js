// Log-in: on success go to ?next= or the records (staff: account page).
import { login } from './api.js';
import { $, nextPath } from './dom.js';
import { startPage } from './layout.js';
import { submitting, validate, value } from './forms.js';

const NOTICES = {
  loggedout: 'You have logged out.',
  reset: 'Your password has been changed. Log in with your new password.',
};

await startPage({ auth: 'public' });

const form = $('#login-form');
const password = form.elements.namedItem('password');
const notice = NOTICES[new URLSearchParams(location.search).get('notice')];
if (notice) $('#login-notice').textContent = notice;

function describe(err) {
  if (err.code === 'invalid_credentials') return 'Wrong username or password. Please check both and try again.';
  return err.message;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!validate(form)) return;
  let failed = false;
  await submitting(form, async () => {
    try {
      const data = await login(value(form, 'username').trim().toLowerCase(), password.value);
      location.assign(nextPath(data.user.role === 'person' ? '/records' : '/account'));
    } catch (err) {
      failed = err.code === 'invalid_credentials';
      throw err;
    }
  }, { describe });
  if (failed) {
    password.value = '';
    password.focus();
  }
});
