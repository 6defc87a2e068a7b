// The counter screen's keyboard: the scan field gets every scan, the checklist is answered with
// 1 (no) and 2 (yes), F9 dispenses (or records a scanned medicine pack), F7 opens "vomited" and
// F8 "void this record" of the newest dose, Esc goes back to the scan field. htmx does the requests; this
// file only moves focus and maps keys. Without it the forms still work with Tab and Enter.
(function () {
  "use strict";
  var root = document.querySelector("[data-counter-screen]");
  if (!root) { return; }
  var scan = document.getElementById("scan");
  var panel = document.getElementById("panel");

  function focusScan() { if (scan) { scan.focus(); } }

  function isTextField(el) {
    if (!el) { return false; }
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") { return true; }
    if (el.tagName !== "INPUT") { return false; }
    return ["text", "search", "password", "number", "tel", ""].indexOf((el.getAttribute("type") || "").toLowerCase()) >= 0;
  }

  function nextQuestion(question) {
    var all = Array.prototype.slice.call(panel.querySelectorAll("[data-question]"));
    var after = all.slice(all.indexOf(question) + 1);
    for (var i = 0; i < after.length; i++) {
      if (!after[i].querySelector("input:checked")) { return after[i].querySelector("input"); }
    }
    var form = question.closest("form");
    var cows = form.querySelector("#cows");
    if (cows && !cows.value) { return cows; }
    return form.querySelector("[data-checklist-submit]");
  }

  // After every swap of the patient panel: the first checklist question when there is one to
  // answer, a chosen item of a list, else the scan field.
  function settleFocus() {
    // What the nurse just asked for (a scanned pack's count, a scanned container's return) first.
    var target = panel.querySelector("[data-autofocus][data-priority]") || panel.querySelector("[data-autofocus]");
    if (target) { target.focus(); } else { focusScan(); }
  }

  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target === panel) { settleFocus(); }
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "scan-form" && scan) { scan.value = ""; }
  });
  // A network failure or a server error: say so where the patient panel is.
  function trouble(text) {
    var box = document.createElement("p");
    box.className = "flash error";
    box.setAttribute("role", "alert");
    box.textContent = text;
    panel.prepend(box);
  }
  document.body.addEventListener("htmx:sendError", function () { trouble(root.dataset.offline || "Mất kết nối với máy chủ."); });
  document.body.addEventListener("htmx:responseError", function () { trouble(root.dataset.failed || "Lỗi máy chủ."); });

  // Keep the queue's open groups open when it refreshes.
  var openGroups = null;
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "queue"
        && event.detail.target.querySelector("details[data-group]")) {
      openGroups = Array.prototype.map.call(event.detail.target.querySelectorAll("details[open]"),
        function (d) { return d.dataset.group; });
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "queue" && openGroups) {
      event.detail.target.querySelectorAll("details[data-group]").forEach(function (d) {
        d.open = openGroups.indexOf(d.dataset.group) >= 0;
      });
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey) { return; }
    var el = document.activeElement;
    if (event.key === "F7" || event.key === "F8") {
      // F7: vomited, F8: void — the form of the newest dose record that offers it.
      var details = panel.querySelector('details[data-after="' + (event.key === "F7" ? "vomit" : "void") + '"]');
      event.preventDefault();
      if (details) {
        details.open = true;
        var field = details.querySelector("[data-first]");
        if (field) { field.focus(); }
      }
      return;
    }
    if (event.key === "F9") {
      // A scanned pack's form first (it was just asked for), else the first dispense button.
      var button = panel.querySelector("[data-dispense-button][data-priority]:not([disabled])")
        || panel.querySelector("[data-dispense-button]:not([disabled])");
      event.preventDefault();
      if (button) { button.closest("form").requestSubmit(button); }
      return;
    }
    if (event.key === "Escape") { event.preventDefault(); focusScan(); return; }
    var question = el && el.closest ? el.closest("[data-question]") : null;
    if (question && (event.key === "1" || event.key === "2")) {
      event.preventDefault();
      var radio = question.querySelector('input[value="' + (event.key === "1" ? "0" : "1") + '"]');
      radio.checked = true;
      var next = nextQuestion(question);
      if (next) { next.focus(); }
      return;
    }
    // Any other character typed outside a text field belongs to the scan field: a card scanned
    // while the focus is on a button or the checklist lands there, never on the page.
    if (event.key.length === 1 && !isTextField(el) && scan && el !== scan) {
      focusScan();
    }
  });

  // Idle sign-out: the server signs out after the idle time; reload then to show the login form.
  var idle = parseInt(root.dataset.idleSeconds || "0", 10);
  if (idle > 0) {
    var last = Date.now();
    ["keydown", "mousedown", "touchstart"].forEach(function (name) {
      document.addEventListener(name, function () { last = Date.now(); }, true);
    });
    window.setInterval(function () {
      if (Date.now() - last > (idle + 5) * 1000) { window.location.reload(); }
    }, 10000);
  }
  focusScan();
})();
