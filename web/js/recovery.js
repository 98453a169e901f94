// The one-time recovery code panel used after sign-up and after a reset:
// shown once, with a copy button; "Continue" stays disabled until the person
// ticks "I have saved my recovery code".
import { $ } from './dom.js';

export async function copyText(text, source) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* fall through to the selection fallback */ }
  }
  const range = document.createRange();
  range.selectNodeContents(source);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

export function showRecoveryCode(panel, code, continueTo) {
  const codeEl = $('.recovery-code', panel);
  const copyButton = $('.copy-button', panel);
  const copyStatus = $('.copy-status', panel);
  const saved = $('input[type="checkbox"]', panel);
  const cont = $('.continue-button', panel);

  codeEl.textContent = code;
  saved.checked = false;
  cont.disabled = true;
  panel.hidden = false;

  copyButton.addEventListener('click', async () => {
    const ok = await copyText(code, codeEl);
    copyStatus.textContent = ok
      ? 'Copied to the clipboard. Paste it somewhere safe.'
      : 'Could not copy automatically: the code is selected, copy it by hand.';
  });
  saved.addEventListener('change', () => {
    cont.disabled = !saved.checked;
  });
  cont.addEventListener('click', () => {
    if (saved.checked) location.assign(continueTo);
  });

  const heading = $('h2', panel);
  heading.setAttribute('tabindex', '-1');
  heading.focus();
}
