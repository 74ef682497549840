// Chat page behaviour htmx does not cover: Enter to send, clearing the composer, scrolling, socket state.
(function () {
  const input = document.getElementById("message-input");
  const composer = document.getElementById("composer");
  const messages = document.getElementById("messages");
  const modelSelect = document.getElementById("model-select");
  const connection = document.getElementById("connection-status");
  const modelInfo = document.getElementById("model-info");
  const sidebarToggle = document.getElementById("sidebar-toggle");

  const busy = () => document.getElementById("chat-status").classList.contains("busy");
  // The composer grows with its text, up to the CSS max-height.
  const fitInput = () => { input.style.height = "auto"; input.style.height = `${input.scrollHeight}px`; };
  const nearBottom = () => messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;

  input.addEventListener("input", fitInput);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      // While a reply streams the text stays in the composer (the server would refuse it).
      if (input.value.trim() && !busy()) composer.requestSubmit();
    }
  });
  document.body.addEventListener("htmx:wsAfterSend", (event) => {
    if (event.detail.elt === composer) {
      input.value = "";
      fitInput();
    }
  });
  // Follow the reply as it grows, unless the reader has scrolled up to read something else.
  let follow = true;
  document.body.addEventListener("htmx:wsBeforeMessage", () => { follow = nearBottom(); });
  document.body.addEventListener("htmx:wsAfterMessage", () => { if (follow) messages.scrollTop = messages.scrollHeight; });
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
  sidebarToggle.addEventListener("click", () => {
    sidebarToggle.setAttribute("aria-expanded", document.body.classList.toggle("sidebar-open"));
  });
  const showModelInfo = () => { modelInfo.textContent = modelSelect.selectedOptions[0]?.dataset.info || ""; };
  modelSelect.addEventListener("change", showModelInfo);
  showModelInfo();
  fitInput();
  messages.scrollTop = messages.scrollHeight;
  input.focus();
})();
