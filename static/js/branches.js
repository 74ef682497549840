// Editing a sent message: "Edit" opens an editor in its place (Enter or Save sends the new version, which
// starts a new branch; Escape or Cancel puts the message back). The edit goes through #edit-form (a ws-send
// form): the server answers with the messages area showing the new branch, which replaces the editor.
(function () {
  const editForm = document.getElementById("edit-form");
  if (!editForm) return;

  const close = (article) => {
    article.querySelector(".message-editor")?.remove();
    article.classList.remove("editing");
  };

  const open = (article) => {
    if (article.classList.contains("editing")) return;
    const content = article.querySelector(".content");
    const editor = document.createElement("form");
    editor.className = "message-editor";
    const text = document.createElement("textarea");
    text.name = "message";
    text.rows = 3;
    text.value = content.innerText.trim();
    text.setAttribute("aria-label", "Edit your message (Enter sends, Shift+Enter for a new line, Escape cancels)");
    const actions = document.createElement("div");
    actions.className = "editor-actions";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button";
    save.textContent = "Save & send";
    actions.append(cancel, save);
    editor.append(text, actions);
    content.after(editor);
    article.classList.add("editing");

    const send = () => {
      if (!text.value.trim()) return;
      editForm.elements.message_id.value = article.id.replace("message-", "");
      editForm.elements.message.value = text.value;
      editForm.requestSubmit();
    };
    editor.addEventListener("submit", (event) => { event.preventDefault(); send(); });
    cancel.addEventListener("click", () => { close(article); article.querySelector(".edit-button")?.focus(); });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      } else if (event.key === "Escape") {
        event.preventDefault();  // not also "stop the reply" (chat.js leaves prevented keys alone)
        close(article);
        article.querySelector(".edit-button")?.focus();
      }
    });
    text.focus();
    text.setSelectionRange(text.value.length, text.value.length);
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-edit-message]");
    if (button) open(button.closest("article.message"));
  });
})();
