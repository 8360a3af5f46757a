// evalrows: progressive enhancement only; every page works without it.
// Expand all / collapse all on a row's trace. Runs on any page: finds nothing, does nothing.
(function () {
  "use strict";

  function enhanceTrace(root) {
    var tools = root.querySelector(".trace-tools");
    if (!tools || tools.hasAttribute("data-enhanced")) {
      return;
    }
    tools.setAttribute("data-enhanced", "");
    tools.hidden = false;
    tools.addEventListener("click", function (event) {
      var target = event.target;
      if (!(target instanceof Element)) {
        return;
      }
      var button = target.closest("button[data-trace]");
      if (!button) {
        return;
      }
      var open = button.getAttribute("data-trace") === "expand";
      root.querySelectorAll("details.span").forEach(function (details) {
        details.open = open;
      });
    });
  }

  function start() {
    document.querySelectorAll("#trace").forEach(enhanceTrace);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  // The report swaps a row's <main> in place: it can call this again on the new content.
  window.evalrowsEnhance = start;
})();
