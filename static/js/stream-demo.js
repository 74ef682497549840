// The developer guide's "try it": GET /api/v1/chat/stream read with an EventSource, the reply written
// as it arrives. This page is on the API's own origin, so the session cookie authenticates it.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("stream-demo");
  if (!form) return;
  const output = document.getElementById("stream-demo-output");
  const status = document.getElementById("stream-demo-status");
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const query = new URLSearchParams({ prompt: form.elements.prompt.value, model: form.elements.model.value });
    const source = new EventSource(`${form.action}?${query}`);
    output.textContent = "";
    status.textContent = "Streaming…";
    source.onmessage = (message) => {
      if (message.data === "[DONE]") {
        source.close(); // or the browser would reconnect (and be answered 204)
        return;
      }
      const event = JSON.parse(message.data);
      if (event.type === "delta") output.textContent += event.content;
      if (event.type === "end") {
        const reply = event.message;
        status.textContent = reply.status === "complete"
          ? `Done: ${reply.usage.total_tokens} tokens, stored in session ${event.session_id}.`
          : `Ended ${reply.status}: ${reply.error}`;
      }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        status.textContent = "The request was refused: check the model and your plan's limits.";
      }
      source.close();
    };
  });
});
