// Password reset with the recovery code; shows the new recovery code once.
import { resetPassword } from './api.js';
import { $ } from './dom.js';
import { startPage } from './layout.js';
import { samePassword, submitting, validate, value } from './forms.js';
import { showRecoveryCode } from './recovery.js';

await startPage({ auth: 'public' });

const form = $('#reset-form');

function describe(err) {
  if (err.code === 'invalid_credentials') return 'That username and recovery code do not match. Check both and try again.';
  return err.message;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!validate(form, [samePassword('new_password2', 'new_password')])) return;
  submitting(form, async () => {
    const data = await resetPassword(
      value(form, 'username').trim().toLowerCase(),
      value(form, 'recovery_code').trim(),
      value(form, 'new_password'),
    );
    form.reset();
    $('#reset-section').hidden = true;
    showRecoveryCode($('#recovery-panel'), data.recovery_code, '/login?notice=reset');
  }, { describe });
});
