// Ragwall admin console: confirmations, and the reindex progress bar fed by polling
// /admin/api/jobs/{id} (same-origin; the session cookie authenticates it). No inline script:
// the pages' Content-Security-Policy allows scripts from 'self' only.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.classList && form.classList.contains("confirm")) {
    if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
  }
});

function pollJob(box) {
  const bar = document.getElementById("reindex-progress");
  const state = document.getElementById("reindex-state");
  const detail = document.getElementById("reindex-detail");
  const done = document.getElementById("reindex-done");
  const url = "/admin/api/jobs/" + encodeURIComponent(box.dataset.job);
  const tick = async () => {
    let job;
    try {
      const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!res.ok) { state.textContent = "progress unavailable (" + res.status + ")"; return; }
      job = await res.json();
    } catch (err) {
      setTimeout(tick, 2000);
      return;
    }
    box.dataset.state = job.state;
    state.textContent = job.state;
    if (job.total) { bar.max = job.total; }
    if (job.state === "succeeded") {
      bar.value = bar.max;
    } else if (job.done != null) {
      bar.value = job.done;
    }
    const parts = [];
    if (job.stage) parts.push(job.stage);
    if (job.total) parts.push((job.done || 0) + "/" + job.total);
    if (job.eta_s) parts.push("about " + Math.round(job.eta_s) + " s left");
    if (job.error) parts.push(job.error);
    detail.textContent = parts.length ? "· " + parts.join(" · ") : "";
    if (job.state === "queued" || job.state === "running") {
      setTimeout(tick, 700);
    } else {
      done.hidden = false;
    }
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("reindex-job");
  if (box && (box.dataset.state === "queued" || box.dataset.state === "running")) pollJob(box);
});
