// Chat page behaviour htmx does not cover: Enter to send, clearing the composer, scrolling, socket state.
(function () {
  const input = document.getElementById("message-input");
  const composer = document.getElementById("composer");
  const messages = document.getElementById("messages");
  const modelSelect = document.getElementById("model-select");
  const connection = document.getElementById("connection-status");
  const modelInfo = document.getElementById("model-info");

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (input.value.trim()) composer.requestSubmit();
    }
  });
  document.body.addEventListener("htmx:wsAfterSend", (event) => {
    if (event.detail.elt === composer) composer.querySelector("textarea").value = "";
  });
  document.body.addEventListener("htmx:wsAfterMessage", () => { messages.scrollTop = messages.scrollHeight; });
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
  const showModelInfo = () => { modelInfo.textContent = modelSelect.selectedOptions[0]?.dataset.info || ""; };
  modelSelect.addEventListener("change", showModelInfo);
  showModelInfo();
  messages.scrollTop = messages.scrollHeight;
})();
