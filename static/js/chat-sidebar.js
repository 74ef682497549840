// The sidebar: a conversation opened from a search result (#message-N in the address) is scrolled to that
// message, which is marked; one "⋯" menu open at a time.
(function () {
  const match = /^#message-(\d+)$/.exec(location.hash);
  const hit = match && document.getElementById(`message-${match[1]}`);
  if (hit) {
    hit.classList.add("search-hit");
    hit.scrollIntoView({ block: "center" });  // after chat.js, which starts at the newest message
  }
  document.addEventListener("toggle", (event) => {
    const menu = event.target;
    if (!menu.matches || !menu.matches(".conversation-actions") || !menu.open) return;
    for (const other of document.querySelectorAll(".conversation-actions[open]")) if (other !== menu) other.open = false;
  }, true);
})();
