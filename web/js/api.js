// CareSync API client: JSON in/out, same-origin cookie session, CSRF header
// on every state-changing request, errors thrown as ApiError.
//
// The cs_session cookie is HttpOnly, so pages cannot see it; a small
// "signed in" hint in localStorage lets public pages skip the session probe
// (and its 401) when nobody has logged in from this browser.

const HINT_KEY = 'caresync.signedIn';
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function setHint(on) {
  try {
    if (on) localStorage.setItem(HINT_KEY, '1');
    else localStorage.removeItem(HINT_KEY);
  } catch { /* storage disabled: the hint is only an optimisation */ }
}

export function hasSessionHint() {
  try { return localStorage.getItem(HINT_KEY) === '1'; } catch { return true; }
}

// Server messages are lower-case phrases ("password must be at least 10
// characters"); show them as sentences.
function sentence(text) {
  if (typeof text !== 'string' || !text) return '';
  const s = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach CareSync. Check your connection and try again.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const message = sentence(e.message) || `The server answered ${res.status} ${res.statusText}.`;
    throw new ApiError(res.status, e.code || `http_${res.status}`, message, e.field || null);
  }
  if (data && typeof data.csrf_token === 'string') csrfToken = data.csrf_token;
  return data;
}

// One request; a stale CSRF token is refreshed once from /api/session.
export async function api(method, path, body) {
  try {
    return await send(method, path, body);
  } catch (err) {
    if (err.code === 'unauthenticated') setHint(false);
    if (err.code !== 'csrf_failed') throw err;
    await getSession();
    return send(method, path, body);
  }
}

// The current user {username, role}, or null when not logged in.
export async function getSession() {
  try {
    const data = await send('GET', '/api/session');
    setHint(true);
    return data.user;
  } catch (err) {
    if (err.code === 'unauthenticated') {
      setHint(false);
      return null;
    }
    throw err;
  }
}

export async function signup(username, password) {
  const data = await send('POST', '/api/auth/signup', { username, password });
  setHint(true);
  return data;
}

export async function login(username, password) {
  const data = await send('POST', '/api/auth/login', { username, password });
  setHint(true);
  return data;
}

export async function logout() {
  try {
    await api('POST', '/api/auth/logout');
  } finally {
    csrfToken = null;
    setHint(false);
  }
}

export function resetPassword(username, recoveryCode, newPassword) {
  return send('POST', '/api/auth/reset', { username, recovery_code: recoveryCode, new_password: newPassword });
}

export async function deleteAccount(password) {
  const data = await api('DELETE', '/api/account', { password });
  csrfToken = null;
  setHint(false);
  return data;
}

// Upload a FormData body with progress (fetch cannot report upload
// progress; XMLHttpRequest can). onProgress(fraction 0..1). Resolves to the
// JSON answer; rejects with ApiError like api().
export function upload(path, form, onProgress) {
  return new Promise((resolveUpload, rejectUpload) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Accept', 'application/json');
    if (csrfToken) xhr.setRequestHeader('X-CSRF-Token', csrfToken);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onerror = () => rejectUpload(new ApiError(0, 'network', 'Could not reach CareSync. Check your connection and try again.'));
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) { resolveUpload(data); return; }
      const e = (data && data.error) || {};
      rejectUpload(new ApiError(xhr.status, e.code || `http_${xhr.status}`,
        sentence(e.message) || `The server answered ${xhr.status}.`, e.field || null));
    };
    xhr.send(form);
  });
}
