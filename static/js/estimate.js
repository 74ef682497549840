// The composer's estimate: as the user types (debounced), the prompt's tokens and the price range of the
// chosen model for the message as it would be sent ("≈ 1,240 tokens in, up to 1,024 out: $0.0012–$0.0031"),
// with the files waiting in the composer (the chips' ids: static/js/attachments.js); again when they change.
(function () {
  const line = document.getElementById("composer-estimate");
  const input = document.getElementById("message-input");
  const modelSelect = document.getElementById("model-select");
  if (!line || !input || !modelSelect) return;
  const WAIT_MS = 400;
  const csrfToken = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"];
  let timer = null;
  let latest = 0; // only the answer to the newest request is shown

  const tokens = (n) => n.toLocaleString("en-US");
  const dollars = (text) => {
    const amount = Number(text);
    return amount === 0 ? "$0" : `$${amount < 0.01 ? amount.toPrecision(2) : amount.toFixed(4)}`;
  };
  const show = (figures) => {
    const { min, max } = figures.cost_usd;
    const price = Number(max) === 0 ? "free" : `${dollars(min)}–${dollars(max)}`;
    let text = `≈ ${tokens(figures.prompt_tokens)} tokens in, up to ${tokens(figures.max_output_tokens)} out: ${price}`;
    if (figures.messages_dropped) text += ` (${tokens(figures.messages_dropped)} earlier messages not sent)`;
    line.textContent = text;
  };

  const estimate = async () => {
    const message = input.value.trim();
    const request = ++latest;
    if (!message) { line.textContent = ""; return; }
    const body = { message, model: modelSelect.value };
    const session = document.getElementById("active-conversation")?.value;
    if (session) body.session_id = Number(session);
    const files = Array.from(document.querySelectorAll("#attachment-chips input[name=attachments]"), (id) => Number(id.value));
    if (files.length) body.attachments = files;
    try {
      const response = await fetch(line.dataset.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (request !== latest) return;
      line.textContent = response.ok ? "" : answer.error.message;
      if (response.ok) show(answer);
    } catch (error) {
      if (request === latest) line.textContent = "";
    }
  };
  const later = () => { clearTimeout(timer); timer = setTimeout(estimate, WAIT_MS); };
  input.addEventListener("input", later);
  modelSelect.addEventListener("change", later);
  const chips = document.getElementById("attachment-chips");
  if (chips) new MutationObserver(later).observe(chips, { childList: true });
  document.body.addEventListener("htmx:wsAfterMessage", () => { if (!input.value.trim()) line.textContent = ""; });
})();
