// A card or table wrapper whose content is wider than the screen scrolls inside it (app.css); so that
// keyboard users can scroll it too, it becomes a focusable region named by its heading while it overflows.
(function () {
  const mark = () => {
    for (const box of document.querySelectorAll(".card, .table-scroll")) {
      const overflows = box.scrollWidth > box.clientWidth + 1;
      if (overflows && !box.hasAttribute("tabindex")) {
        box.tabIndex = 0;
        box.dataset.scrollRegion = "";
        if (!box.getAttribute("role")) box.setAttribute("role", "region");
        if (!box.hasAttribute("aria-label") && !box.hasAttribute("aria-labelledby")) {
          const heading = box.querySelector("h1, h2, h3") || box.closest(".card")?.querySelector("h1, h2, h3");
          box.setAttribute("aria-label", heading ? `${heading.textContent.trim()} (scrolls sideways)` : "Scrolls sideways");
        }
      } else if (!overflows && box.dataset.scrollRegion !== undefined) {
        box.removeAttribute("tabindex");
      }
    }
  };
  window.addEventListener("load", mark);
  window.addEventListener("resize", () => { clearTimeout(mark.timer); mark.timer = setTimeout(mark, 200); });
  document.body.addEventListener("htmx:afterSettle", mark);
})();
