(function () {
  "use strict";
  function setAll(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  function filterTrials(onlyFailing) {
    document.querySelectorAll("details.trial").forEach(function (d) {
      d.classList.toggle("hidden", onlyFailing && d.dataset.status === "pass");
    });
  }
  function reveal(id) {
    var el = document.getElementById(id);
    for (var node = el; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
    if (el) { el.scrollIntoView(); }
  }
  document.addEventListener("click", function (ev) {
    var target = ev.target;
    if (!(target instanceof Element)) { return; }
    var action = target.getAttribute("data-action");
    if (action === "expand") { setAll(true); }
    if (action === "collapse") { setAll(false); }
    var link = target.closest("a[href^='#']");
    if (link) { reveal(link.getAttribute("href").slice(1)); }
  });
  var only = document.getElementById("only-failing");
  if (only) { only.addEventListener("change", function () { filterTrials(only.checked); }); }
  if (location.hash) { reveal(location.hash.slice(1)); }
})();
