// Copy buttons: <button data-copy-target="#id"> copies that element's text to the clipboard.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copyTarget);
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    window.getSelection().selectAllChildren(source);  // no clipboard access (http): select it for Ctrl+C
    button.textContent = "Press Ctrl+C";
  }
});
