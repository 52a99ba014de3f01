// queuewatch's own script: refresh ticks, confirmations, selection.
// Loaded as a file (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  var pollMs = Math.max(1000, parseFloat(document.body.dataset.pollSeconds || "5") * 1000);
  var dialog = document.getElementById("confirm-dialog");
  var confirming = false;

  function paused() {
    return document.visibilityState !== "visible" || confirming;
  }

  // Every poll interval, ask each refreshing component to reload itself —
  // unless the tab is hidden, a confirmation is open, or the operator has
  // selected rows in it (a refresh would throw the selection away).
  function tick() {
    document.documentElement.classList.toggle("refresh-paused", paused());
    if (paused() || !window.htmx) return;
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      if (el.hasAttribute("data-hold-while-selected") && el.querySelector("input[type=checkbox]:checked")) return;
      window.htmx.trigger(el, "qw:tick");
    });
  }
  setInterval(tick, pollMs);

  // A refresh that lands between the press and the release of a click would
  // put the two on different elements (the old row, the new one) and the
  // click would be lost: while a pointer is down, a refresh is not swapped in
  // (the next tick brings it). Requests the operator made (a form) still are.
  var pressing = false;
  document.addEventListener("pointerdown", function () { pressing = true; }, true);
  ["pointerup", "pointercancel"].forEach(function (type) {
    document.addEventListener(type, function () { setTimeout(function () { pressing = false; }, 0); }, true);
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var source = event.detail.elt;
    if (pressing && source && source.hasAttribute && source.hasAttribute("data-refresh")) event.detail.shouldSwap = false;
  });
  document.addEventListener("visibilitychange", function () {
    document.documentElement.classList.toggle("refresh-paused", paused());
  });

  function ask(message, onConfirm) {
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(message)) onConfirm();
      return;
    }
    document.getElementById("confirm-message").textContent = message;
    confirming = true;
    document.documentElement.classList.add("refresh-paused");
    dialog.returnValue = "";
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      confirming = false;
      document.documentElement.classList.toggle("refresh-paused", paused());
      if (dialog.returnValue === "ok") onConfirm();
    });
    dialog.showModal();
  }

  function selectedCount(form) {
    return form.querySelectorAll("input[name=ids]:checked").length;
  }

  // A second click while the first request is under way must not send it twice.
  function lock(form) {
    setTimeout(function () {
      document.querySelectorAll("button[type=submit]").forEach(function (b) {
        if (b.form === form) { b.disabled = true; b.setAttribute("aria-busy", "true"); }
      });
    }, 0);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (form.dataset.confirmed === "1") {
      form.dataset.confirmed = "";
      lock(form);
      return;
    }
    var message = button && button.dataset.confirm;
    if (button && button.dataset.confirmSelected !== undefined) {
      var n = selectedCount(form);
      if (n === 0) { event.preventDefault(); return; }
      message = button.dataset.confirmSelected.replace("{n}", n.toLocaleString());
    }
    if (!message) { lock(form); return; }
    event.preventDefault();
    ask(message, function () {
      form.dataset.confirmed = "1";
      form.requestSubmit(button);
    });
  }, true);

  function syncSelection(root) {
    (root || document).querySelectorAll("form").forEach(function (form) {
      var n = selectedCount(form);
      form.querySelectorAll("[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
      var all = form.querySelector("[data-select-all]");
      var boxes = form.querySelectorAll("input[name=ids]");
      if (all) all.checked = boxes.length > 0 && n === boxes.length;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      target.form.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = target.checked; });
    }
    if (target.form) syncSelection(target.form.parentNode);
  });
  document.addEventListener("htmx:afterSwap", function () { syncSelection(); });
  syncSelection();
})();
