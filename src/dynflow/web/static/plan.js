// The plan page: live updates through server-sent events (states, the graph's group
// counts, the timeline), zoom and pan of the graph, copy buttons. Everything works
// without it (links and the "refresh" link).
"use strict";

const STATE_CLASS = /\bstate-[a-z]+\b/;
const SVG_NS = "http://www.w3.org/2000/svg";
// every step's state as last heard (the stream's first event has them all)
const known = new Map();

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

// -- the graph's group nodes: their steps' state counts, recounted as states change --

// "start:stride:count" runs and single ids (see graph_groups.member_ranges)
function memberIds(text) {
  const ids = [];
  for (const part of text.split(" ")) {
    if (!part) continue;
    const [start, stride, count] = part.split(":").map(Number);
    if (stride === undefined) { ids.push(String(start)); continue; }
    for (let n = 0; n < count; n += 1) ids.push(String(start + stride * n));
  }
  return ids;
}

let groupsByStep = null;

function groupIndex() {
  if (groupsByStep) return groupsByStep;
  groupsByStep = new Map();
  document.querySelectorAll("g.node.group[data-members]").forEach((element) => {
    const group = { element, ids: memberIds(element.dataset.members) };
    group.ids.forEach((id) => groupsByStep.set(id, group));
  });
  return groupsByStep;
}

function drawGroup(group) {
  const counts = {};
  for (const id of group.ids) {
    const state = known.get(id);
    if (state === undefined) return; // not heard of yet: keep what the server drew
    counts[state] = (counts[state] || 0) + 1;
  }
  const element = group.element;
  const svg = element.ownerSVGElement;
  const priority = (svg.dataset.priority || "").split(" ");
  const legend = (svg.dataset.legend || "").split(" ");
  setState(element, priority.find((s) => counts[s]) || "pending");
  const summary = Object.keys(counts).sort().map((s) => `${counts[s]} ${s}`).join(", ");
  if (element.dataset.counts === summary) return;
  element.dataset.counts = summary;
  const title = element.querySelector("title");
  if (title) title.textContent = `${element.dataset.head} (${summary})`;
  element.querySelectorAll("rect.bar").forEach((bar) => bar.remove());
  const box = element.querySelector("rect:not(.stack):not(.bar):not(.track)");
  let x = Number(box.getAttribute("x")) + 8;
  const y = Number(box.getAttribute("y")) + 26;
  const room = Number(box.getAttribute("width")) - 16;
  for (const name of legend) {
    if (!counts[name]) continue;
    const width = (room * counts[name]) / group.ids.length;
    const bar = document.createElementNS(SVG_NS, "rect");
    bar.setAttribute("class", `bar state-${name}`);
    bar.setAttribute("x", x.toFixed(1));
    bar.setAttribute("y", String(y));
    bar.setAttribute("width", width.toFixed(1));
    bar.setAttribute("height", "8");
    element.appendChild(bar);
    x += width;
  }
}

function applyGroups(steps) {
  const index = groupIndex();
  const dirty = new Set();
  for (const id of Object.keys(steps)) {
    const group = index.get(id);
    if (group) dirty.add(group);
  }
  dirty.forEach(drawGroup);
}

// -- the timeline: read again from the server (new rows, longer bars, a new scale) --

let heard = false;
let timelineBusy = false;
let timelineAgain = false;

function refreshTimeline() {
  const tab = document.querySelector(".timeline-tab[data-timeline]");
  if (!tab || !window.fetch) return;
  if (timelineBusy) { timelineAgain = true; return; }
  timelineBusy = true;
  fetch(tab.dataset.timeline, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
    .then((html) => {
      const found = new DOMParser().parseFromString(html, "text/html").querySelector(".timeline-tab");
      const current = document.querySelector(".timeline-tab");
      if (!found || !current) return;
      const view = current.querySelector(".timeline-view");
      const [left, top] = view ? [view.scrollLeft, view.scrollTop] : [0, 0];
      current.replaceWith(document.adoptNode(found));
      const fresh = found.querySelector(".timeline-view");
      if (fresh) { fresh.scrollLeft = left; fresh.scrollTop = top; }
      document.body.dataset.timelineUpdates = String(Number(document.body.dataset.timelineUpdates || 0) + 1);
    })
    .catch(() => {}) // the next change tries again
    .finally(() => {
      // at most one read a second, however fast the steps change
      window.setTimeout(() => {
        timelineBusy = false;
        if (timelineAgain) { timelineAgain = false; refreshTimeline(); }
      }, 1000);
    });
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
  if (data.steps) {
    if (data.full) known.clear();
    for (const [id, state] of Object.entries(data.steps)) known.set(id, state);
    applySteps(data.steps);
    applyGroups(data.steps);
    applySuspended();
    if (heard) refreshTimeline(); // (the first event tells what the page shows already)
    heard = true;
  }
}

// The "waiting for an event" section follows the steps: a step that went on leaves
// it, the count follows, and the section goes once no step waits for an event.
function applySuspended() {
  const section = document.querySelector('[data-live="suspended"]');
  if (!section) return;
  section.querySelectorAll(".suspended-step[data-step]").forEach((item) => {
    const state = known.get(item.dataset.step);
    if (state && state !== "suspended") item.remove();
  });
  const count = Array.from(known.values()).filter((state) => state === "suspended").length;
  const listed = section.querySelectorAll(".suspended-step").length;
  section.hidden = count === 0;
  const title = section.querySelector("h2");
  if (title) title.textContent = `${count} step${count === 1 ? "" : "s"} waiting for an event`;
  const more = section.querySelector('[data-live="suspended-more"]');
  if (more) {
    more.hidden = count <= listed;
    more.textContent = count > listed ? `${count - listed} more: reload the page to send them events.` : "";
  }
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
    refreshTimeline(); // the last steps' end times
    source.close();
    document.body.dataset.liveEnded = "true";
    if (status) status.textContent = "finished: refresh for the details";
    // the commands shown were those of a running plan: refresh for the ones that apply now
    document.querySelectorAll("header .commands").forEach((commands) => { commands.hidden = true; });
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
