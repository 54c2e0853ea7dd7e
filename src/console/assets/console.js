// The console's one script: live run rows, the flow editor's checks as you type, copy as curl.
// Every page works without it; it only saves reloads. No inline script anywhere (the CSP
// allows this file only).
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

// Runs: ask for the first page's rows every 2 seconds while the tab is visible.
function liveRows(tbody) {
  const url = tbody.dataset.live;
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(url, { credentials: "same-origin" });
      // A redirect means the session ended: reload to show the login page.
      if (answer.redirected) return location.reload();
      if (answer.ok) {
        const rows = await answer.text();
        if (rows !== tbody.dataset.last) {
          tbody.innerHTML = rows;
          tbody.dataset.last = rows;
        }
      }
    } catch (_) {
      // The server is restarting or unreachable: try again on the next tick.
    } finally {
      busy = false;
    }
  }, 2000);
}

// Flow editor: validate 300 ms after the last keystroke; a problem's link moves the cursor.
function editor(form) {
  const text = form.querySelector("textarea");
  const list = form.querySelector("#problems");
  let timer = 0;
  let asked = 0;
  const check = async () => {
    const mine = ++asked;
    const body = new URLSearchParams({ id: form.dataset.validate, yaml: text.value });
    try {
      const answer = await fetch("/validate", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf() },
        body,
      });
      if (mine === asked && answer.ok) list.innerHTML = await answer.text();
    } catch (_) {
      // Checked again on the next keystroke, and by the server on save.
    }
  };
  text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  list.addEventListener("click", (event) => {
    const item = event.target.closest("[data-line]");
    if (!item) return;
    event.preventDefault();
    const lines = text.value.split("\n");
    const line = Math.max(1, Number(item.dataset.line));
    const column = Math.max(1, Number(item.dataset.column));
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at += column - 1;
    text.focus();
    text.setSelectionRange(at, at);
  });
}

function copyButtons() {
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = button.parentElement.querySelector("pre")?.textContent ?? "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (_) {
        // No clipboard (not a secure context): select the text for Ctrl-C instead.
        const range = document.createRange();
        range.selectNodeContents(button.parentElement.querySelector("pre"));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl-C";
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("tbody[data-live]").forEach(liveRows);
  document.querySelectorAll("form[data-validate]").forEach(editor);
  document.querySelectorAll("[data-back]").forEach((link) =>
    link.addEventListener("click", (event) => {
      if (history.length > 1) {
        event.preventDefault();
        history.back();
      }
    }),
  );
  copyButtons();
  // A run that has not ended: look again in 2 seconds, unless the reader is busy on the page
  // (a field has focus or text is selected).
  if (document.querySelector("[data-reload-while]")) {
    setInterval(() => {
      const busy = document.activeElement?.matches("input, textarea") || String(getSelection()).length > 0;
      if (!document.hidden && !busy) location.reload();
    }, 2000);
  }
});
