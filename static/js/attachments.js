// Files for the next message: the 📎 button, drag and drop onto the chat, paste into the composer. Each
// file is uploaded at once (POST /chat/attachments/) and shown as a chip with its token count; the chip's
// hidden input sends its id with the message. Chips leave when the server took the message.
(function () {
  const box = document.getElementById("attachments");
  if (!box) return;
  const input = document.getElementById("attachment-input");
  const chips = document.getElementById("attachment-chips");
  const chat = document.getElementById("chat");
  const composer = document.getElementById("composer");
  const modelSelect = document.getElementById("model-select");
  const errorBanner = document.getElementById("chat-error");
  const csrfToken = () => JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"] || "";

  const showError = (text) => { errorBanner.textContent = text; };

  async function upload(file) {
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image.png");
    form.append("model", modelSelect.value);
    const placeholder = document.createElement("span");
    placeholder.className = "attachment-chip uploading";
    placeholder.textContent = `${file.name || "image"}…`;
    chips.append(placeholder);
    try {
      const response = await fetch(box.dataset.uploadUrl, {
        method: "POST", body: form, headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin",
      });
      const html = await response.text();
      if (response.ok) {
        placeholder.outerHTML = html;
      } else {
        placeholder.remove();
        const holder = document.createElement("div");
        holder.innerHTML = html;
        showError(response.status === 413 ? `${file.name} is too large.` : holder.textContent.trim());
      }
    } catch (error) {
      placeholder.remove();
      showError(`${file.name} could not be uploaded: ${error}`);
    }
  }
  const uploadAll = (files) => { for (const file of files) upload(file); };

  document.getElementById("attach-button").addEventListener("click", () => input.click());
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
  chat.addEventListener("dragover", (event) => {
    if (event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files")) {
      event.preventDefault();
      chat.classList.add("dropping");
    }
  });
  chat.addEventListener("dragleave", () => chat.classList.remove("dropping"));
  chat.addEventListener("drop", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    chat.classList.remove("dropping");
    uploadAll(event.dataTransfer.files);
  });
  document.getElementById("message-input").addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    if (files.length) { event.preventDefault(); uploadAll(files); }
  });
  chips.addEventListener("click", async (event) => {
    const button = event.target.closest(".attachment-remove");
    if (!button) return;
    await fetch(button.dataset.removeUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin" });
    button.closest(".attachment-chip").remove();
  });

  // The chips sent with a message leave once the server has stored it (it echoes the send's draft number).
  let sent = null;
  document.body.addEventListener("htmx:wsConfigSend", (event) => {
    if (event.detail.elt !== composer) return;
    sent = { draft: String(event.detail.parameters.draft || ""), chips: Array.from(chips.children) };
  });
  document.body.addEventListener("htmx:wsAfterMessage", () => {
    const ack = document.getElementById("composer-ack");
    if (!sent || !ack || ack.dataset.draft !== sent.draft) return;
    sent.chips.forEach((chip) => chip.remove());
    sent = null;
  });
})();
