// Ask before every state-changing form is sent.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Pages marked data-refresh="N" reload every N seconds (the plans list when asked,
// a plan while it runs), so states and colours stay live.
document.addEventListener("DOMContentLoaded", () => {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (seconds > 0) {
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
});

// A "select all" checkbox ticks every row's checkbox of its table.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (box instanceof HTMLInputElement && box.classList.contains("select-all")) {
    const table = box.closest("table");
    if (table) {
      table.querySelectorAll('tbody input[type="checkbox"]').forEach((row) => {
        row.checked = box.checked;
      });
    }
  }
});

// A box that scrolls (a wide table on a phone, a long output) can be reached and
// scrolled by keyboard.
function focusableScrollers() {
  document.querySelectorAll("pre, .table-box, .flow").forEach((box) => {
    const scrolls = box.scrollWidth > box.clientWidth || box.scrollHeight > box.clientHeight;
    if (scrolls && !box.hasAttribute("tabindex")) {
      box.setAttribute("tabindex", "0");
    } else if (!scrolls && box.getAttribute("tabindex") === "0") {
      box.removeAttribute("tabindex");
    }
  });
}
document.addEventListener("DOMContentLoaded", focusableScrollers);
window.addEventListener("resize", focusableScrollers);
