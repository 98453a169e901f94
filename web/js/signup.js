// Sign-up: create the account, then show the one-time recovery code.
import { signup } from './api.js';
import { $ } from './dom.js';
import { startPage } from './layout.js';
import { samePassword, submitting, validate, value } from './forms.js';
import { showRecoveryCode } from './recovery.js';

await startPage({ auth: 'public' });

const form = $('#signup-form');

function describe(err) {
  if (err.code === 'username_taken') {
    err.field = 'username';
    return 'That username is already taken. Please choose another.';
  }
  return err.message;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(form, [samePassword('password2', 'password')])) return;
  submitting(form, async () => {
    const username = value(form, 'username').trim().toLowerCase();
    const data = await signup(username, value(form, 'password'));
    form.reset();
    $('#signup-section').hidden = true;
    await startPage({ auth: 'public' });
    showRecoveryCode($('#recovery-panel'), data.recovery_code, '/records');
  }, { describe });
});
