// evalrows: progressive enhancement only; every page works without it.
// "Expand all" / "Collapse all" on a row's trace: the buttons are in the page, hidden until
// this script shows them. Clicks are caught on the document, and traces put in later (the
// report swaps a row's page in) get their buttons shown too. On a page with no trace it
// finds nothing and does nothing.
(function () {
  "use strict";

  function showTools() {
    document.querySelectorAll("#trace .trace-tools[hidden]").forEach(function (tools) {
      tools.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) {
      return;
    }
    var button = target.closest("#trace button[data-trace]");
    if (!button) {
      return;
    }
    var open = button.getAttribute("data-trace") === "expand";
    var trace = button.closest("#trace");
    trace.querySelectorAll("details.span").forEach(function (details) {
      details.open = open;
    });
  });

  function start() {
    showTools();
    new MutationObserver(showTools).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
