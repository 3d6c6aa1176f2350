// Conveniences only: every page works without this script.
"use strict";
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  // Filters apply as soon as a menu changes.
  for (const sel of document.querySelectorAll("select[data-autosubmit]")) {
    sel.addEventListener("change", () => sel.form.submit());
  }
  // Ask before destructive actions.
  for (const btn of document.querySelectorAll("button[data-confirm]")) {
    btn.addEventListener("click", (ev) => {
      if (!window.confirm(btn.dataset.confirm)) ev.preventDefault();
    });
  }
  // Copy buttons for the token and the deployment commands.
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.addEventListener("click", async () => {
      const src = document.querySelector(btn.dataset.copy);
      if (!src) return;
      try {
        await navigator.clipboard.writeText(src.textContent);
        btn.textContent = "Copied";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(src);
        const s = window.getSelection();
        s.removeAllRanges();
        s.addRange(range);
        btn.textContent = "Selected: press Ctrl+C";
      }
    });
  }
  // A CSV file chosen from disk lands in the import box (pasting works without JS).
  const file = document.getElementById("csv-file");
  const box = document.getElementById("csv");
  if (file && box) {
    file.hidden = false;
    file.addEventListener("change", async () => {
      if (file.files.length) box.value = await file.files[0].text();
    });
  }
});
