// Account settings: change password, log out other devices, log out, delete
// the account.
import { api, deleteAccount, logout } from './api.js';
import { $, el } from './dom.js';
import { setNavUser, startPage } from './layout.js';
import { samePassword, showOk, submitting, validate, value } from './forms.js';

const user = await startPage({ auth: 'required' });
const page = $('#account-page');

$('#account-summary').replaceChildren('Signed in as ', el('strong', { text: user.username }),
  user.role === 'person' ? '.' : ` (${user.role} account).`);
if (user.role !== 'person') {
  // Staff keep no records, so there is nothing to export.
  const exportLink = $('#delete-export-link');
  exportLink.parentElement.replaceChildren('This permanently destroys your account. It cannot be undone.');
}
page.hidden = false;

const pwForm = $('#password-form');
pwForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(pwForm, [samePassword('new_password2', 'new_password')])) return;
  submitting(pwForm, async () => {
    await api('POST', '/api/account/password', {
      current_password: value(pwForm, 'current_password'),
      new_password: value(pwForm, 'new_password'),
    });
    pwForm.reset();
    showOk(pwForm, 'Password changed. Any other devices have been logged out.');
  }, {
    describe: (err) => {
      if (err.code === 'invalid_credentials') {
        err.field = 'current_password';
        return 'Your current password is not right.';
      }
      return err.message;
    },
  });
});

// Ends every other session of the account; this one goes on.
const sessionsForm = $('#sessions-form');
sessionsForm.addEventListener('submit', (event) => {
  event.preventDefault();
  submitting(sessionsForm, async () => {
    const { ended } = await api('POST', '/api/account/sessions/revoke-others');
    let text = `Logged out ${ended} other sessions. You are still logged in here.`;
    if (ended === 0) text = 'No other device was logged in. You are still logged in here.';
    else if (ended === 1) text = 'Logged out 1 other session. You are still logged in here.';
    showOk(sessionsForm, text);
  });
});

$('#account-logout').addEventListener('click', async (event) => {
  event.currentTarget.disabled = true;
  try {
    await logout();
  } catch { /* already logged out */ }
  location.assign('/login?notice=loggedout');
});

const delForm = $('#delete-form');
delForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(delForm)) return;
  submitting(delForm, async () => {
    await deleteAccount(value(delForm, 'password'));
    page.hidden = true;
    setNavUser(null);
    const done = $('#deleted-panel');
    done.hidden = false;
    const h = $('h2', done);
    h.setAttribute('tabindex', '-1');
    h.focus();
  }, {
    describe: (err) => {
      if (err.code === 'invalid_credentials') {
        err.field = 'password';
        return 'That password is not right; your account was not deleted.';
      }
      return err.message;
    },
  });
});
