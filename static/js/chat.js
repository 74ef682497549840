// Chat page behaviour htmx does not cover: Enter to send, Escape to stop, emptying the composer once the
// server took the message, the address of a new chat, scrolling, socket state.
(function () {
  const input = document.getElementById("message-input");
  const composer = document.getElementById("composer");
  const stopForm = document.getElementById("stop-form");
  const messages = document.getElementById("messages");
  const modelSelect = document.getElementById("model-select");
  const connection = document.getElementById("connection-status");
  const modelInfo = document.getElementById("model-info");
  const sidebarToggle = document.getElementById("sidebar-toggle");

  const busy = () => document.getElementById("chat-status").classList.contains("busy");
  const conversationId = () => document.getElementById("active-conversation").value;
  // The composer grows with its text, up to the CSS max-height.
  const fitInput = () => { input.style.height = "auto"; input.style.height = `${input.scrollHeight}px`; };
  const nearBottom = () => messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;

  // A new chat's socket (/ws/chat/new/) creates the conversation with the first message; if it drops
  // after that, it reconnects to that conversation, not to a new one.
  const createWebSocket = htmx.createWebSocket;
  htmx.createWebSocket = (url) => {
    const id = conversationId();
    return createWebSocket(id ? url.replace(/\/ws\/chat\/new\/$/, `/ws/chat/${id}/`) : url);
  };

  input.addEventListener("input", fitInput);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      // While a reply streams the text stays in the composer (the server would refuse it).
      if (input.value.trim() && !busy()) composer.requestSubmit();
    }
  });
  // "?" lists the shortcuts, "/" goes to the search (neither while typing).
  const shortcuts = document.getElementById("shortcuts");
  const search = document.querySelector(".sidebar .search");
  document.getElementById("shortcuts-button").addEventListener("click", () => shortcuts.showModal());
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select, [contenteditable]");
    if (typing || event.ctrlKey || event.metaKey || event.altKey || shortcuts.open) return;
    if (event.key === "?") { event.preventDefault(); shortcuts.showModal(); }
    else if (event.key === "/") { event.preventDefault(); if (window.innerWidth <= 760) setDrawer(true); search.focus(); }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented || shortcuts.open) return;
    if (drawerOpen()) setDrawer(false);  // the drawer first: Escape closes what is on top
    else if (busy()) stopForm.requestSubmit();
  });

  // Each send carries a draft number; the server echoes it in #composer-ack when it has stored the
  // message. Only then is the composer emptied: a refused message stays, to be sent again.
  let draftNumber = 0;
  let pending = null;
  document.body.addEventListener("htmx:wsConfigSend", (event) => {
    if (event.detail.elt !== composer) return;
    draftNumber += 1;
    event.detail.parameters.draft = String(draftNumber);
    pending = { draft: String(draftNumber), text: input.value };
  });
  const takeAck = () => {
    const ack = document.getElementById("composer-ack");
    if (!pending || ack.dataset.draft !== pending.draft) return;
    if (input.value === pending.text) { input.value = ""; fitInput(); }
    pending = null;
  };

  // A new chat gets its address once the server stored it; the tab's title follows the heading.
  const followConversation = () => {
    const id = conversationId();
    if (id && location.pathname !== `/chat/${id}/`) history.replaceState(null, "", `/chat/${id}/`);
    const heading = document.getElementById("conversation-heading").textContent.trim();
    if (heading) document.title = `${heading} · AI Hub`;
  };

  // Follow the reply as it grows, unless the reader has scrolled up to read something else.
  let follow = true;
  document.body.addEventListener("htmx:wsBeforeMessage", () => { follow = nearBottom(); });
  document.body.addEventListener("htmx:wsAfterMessage", () => {
    takeAck();
    followConversation();
    if (follow) messages.scrollTop = messages.scrollHeight;
  });
  document.body.addEventListener("htmx:wsOpen", () => {
    connection.textContent = "";
    connection.dataset.state = "open";
  });
  document.body.addEventListener("htmx:wsClose", (event) => {
    connection.dataset.state = "closed";
    const code = event.detail.event && event.detail.event.code;
    connection.textContent = code === 4401 ? "Your session has ended: log in again."
      : code === 4404 ? "This conversation is not available." : "Connection lost: reconnecting…";
  });
  // On a phone the sidebar is a drawer: ☰ opens it; its close button, a tap beside it or Escape close it.
  // Closed, it is inert: only moved off screen, its links would still take Tab stops, unseen.
  const sidebar = document.getElementById("sidebar");
  const phone = window.matchMedia("(max-width: 760px)");
  const setDrawer = (open) => {
    document.body.classList.toggle("sidebar-open", open);
    sidebarToggle.setAttribute("aria-expanded", open);
    sidebar.inert = phone.matches && !open;
  };
  const drawerOpen = () => document.body.classList.contains("sidebar-open");
  // Opened by ☰, it takes the focus (it comes before ☰ in the page: Tab would go on past it).
  sidebarToggle.addEventListener("click", () => {
    setDrawer(!drawerOpen());
    if (drawerOpen()) document.getElementById("drawer-close").focus();
  });
  phone.addEventListener("change", () => setDrawer(drawerOpen()));
  setDrawer(drawerOpen());
  document.getElementById("drawer-close").addEventListener("click", () => { setDrawer(false); sidebarToggle.focus(); });
  document.getElementById("drawer-backdrop").addEventListener("click", () => setDrawer(false));
  const showModelInfo = () => { modelInfo.textContent = modelSelect.selectedOptions[0]?.dataset.info || ""; };
  modelSelect.addEventListener("change", showModelInfo);
  showModelInfo();
  fitInput();
  messages.scrollTop = messages.scrollHeight;
  input.focus();
})();
