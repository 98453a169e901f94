// Landing page: offer "Open my records" instead of sign-up to a logged-in person.
import { startPage } from './layout.js';
import { $ } from './dom.js';

const user = await startPage({ auth: 'public' });
if (user) {
  $('#guest-actions').hidden = true;
  $('#member-actions').hidden = false;
  if (user.role !== 'person') {
    $('#open-records').hidden = true;
    $('#open-screening').hidden = true;
  }
}
