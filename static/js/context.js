// Keeps the "earlier messages are not sent" marker before the oldest message the latest reply was sent
// with (#context-cut says which; the server renders it in place on page load, replies move it).
(function () {
  const place = () => {
    const cut = document.getElementById("context-cut");
    if (!cut) return;
    const target = cut.dataset.firstSentId && document.getElementById(`message-${cut.dataset.firstSentId}`);
    let marker = document.getElementById("context-marker");
    if (!target) {
      if (marker && !cut.dataset.firstSentId) marker.remove(); // the whole history was sent again
      return;
    }
    if (!marker) {
      marker = cut.firstElementChild.cloneNode(true);
      marker.id = "context-marker";
    }
    if (marker.nextElementSibling !== target) target.before(marker);
  };
  document.body.addEventListener("htmx:wsAfterMessage", place);
  document.body.addEventListener("htmx:afterSwap", place);
})();
