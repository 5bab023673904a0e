// The plan page: live updates through server-sent events, zoom and pan of the graph,
// copy buttons. Everything works without it (links and the "refresh" link).
"use strict";

const STATE_CLASS = /\bstate-[a-z]+\b/;

function setState(element, state) {
  if (element.classList) {
    const current = Array.from(element.classList).filter((c) => c.startsWith("state-"));
    current.forEach((c) => element.classList.remove(c));
    element.classList.add(`state-${state}`);
  }
}

function applySteps(steps) {
  for (const [id, state] of Object.entries(steps)) {
    document.querySelectorAll(`[data-step="${id}"]`).forEach((element) => {
      if (element.matches(".node, .row, .step-row, .failed-step")) {
        setState(element, state);
        element.querySelectorAll(".bar").forEach((bar) => setState(bar, state));
      }
      element.querySelectorAll("[data-state-text]").forEach((text) => {
        text.textContent = state;
        if (STATE_CLASS.test(text.getAttribute("class") || "")) setState(text, state);
      });
    });
  }
}

function applyPlan(data) {
  const state = document.querySelector('[data-live="state"]');
  if (data.state && state) { state.textContent = data.state; setState(state, data.state); }
  const result = document.querySelector('[data-live="result"]');
  if (data.result && result) {
    result.textContent = data.result;
    Array.from(result.classList).filter((c) => c.startsWith("result-")).forEach((c) => result.classList.remove(c));
    result.classList.add(`result-${data.result}`);
  }
  if (typeof data.progress === "number") {
    const bar = document.querySelector('[data-live="progress"]');
    if (bar) bar.value = data.progress;
    const text = document.querySelector('[data-live="progress-text"]');
    if (text) text.textContent = `${Math.round(data.progress * 100)}%`;
  }
  if (data.steps) applySteps(data.steps);
}

function live() {
  const url = document.body.dataset.events;
  const status = document.querySelector('[data-live="status"]');
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  document.body.dataset.liveEvents = "0";
  if (status) status.textContent = "live";
  source.addEventListener("state", (message) => {
    applyPlan(JSON.parse(message.data));
    document.body.dataset.liveEvents = String(Number(document.body.dataset.liveEvents) + 1);
  });
  source.addEventListener("end", (message) => {
    applyPlan(JSON.parse(message.data));
    source.close();
    document.body.dataset.liveEnded = "true";
    if (status) status.textContent = "finished: refresh for the details";
  });
  source.addEventListener("error", () => {
    if (status && source.readyState !== EventSource.CLOSED) status.textContent = "reconnecting…";
  });
}

function zoom() {
  const view = document.querySelector(".graph-view");
  const tools = document.querySelector(".graph-tools .zoom");
  const svg = view && view.querySelector("svg");
  if (!view || !svg) return;
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  let scale = 1;
  const apply = () => {
    svg.setAttribute("width", String(Math.round(width * scale)));
    svg.setAttribute("height", String(Math.round(height * scale)));
  };
  if (tools) {
    tools.hidden = false;
    tools.addEventListener("click", (event) => {
      const how = event.target.dataset ? event.target.dataset.zoom : undefined;
      if (how === "in") scale = Math.min(scale * 1.25, 4);
      if (how === "out") scale = Math.max(scale / 1.25, 0.05);
      if (how === "fit") scale = Math.min(1, view.clientWidth / width, view.clientHeight / height);
      apply();
    });
  }
  view.addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    scale = Math.min(4, Math.max(0.05, scale * (event.deltaY < 0 ? 1.1 : 1 / 1.1)));
    apply();
  }, { passive: false });
  let drag = null;
  view.addEventListener("mousedown", (event) => {
    if (event.target.closest("a")) return;
    drag = { x: event.clientX, y: event.clientY, left: view.scrollLeft, top: view.scrollTop };
    view.classList.add("dragging");
  });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    view.scrollLeft = drag.left - (event.clientX - drag.x);
    view.scrollTop = drag.top - (event.clientY - drag.y);
  });
  window.addEventListener("mouseup", () => { drag = null; view.classList.remove("dragging"); });
  // show the selected step's node (the side panel's), else the start of the flow
  const panel = document.querySelector("aside.panel");
  const selected = panel && svg.querySelector(`.node[data-step="${panel.dataset.step}"] rect`);
  if (selected) {
    const box = selected.getBBox();
    view.scrollLeft = box.x + box.width / 2 - view.clientWidth / 2;
    view.scrollTop = box.y + box.height / 2 - view.clientHeight / 2;
  }
}

function copyButtons() {
  document.querySelectorAll("button.copy").forEach((button) => {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      const text = button.closest("details").querySelector(".json-text").textContent;
      navigator.clipboard.writeText(text).then(() => { button.textContent = "Copied"; });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  live();
  zoom();
  copyButtons();
});
