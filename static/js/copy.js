// Copy buttons: <button data-copy-target="#id"> copies that element's text to the clipboard;
// <button data-copy-code> (in a reply's code block) copies the block's code.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target], [data-copy-code]");
  if (!button) return;
  const source = button.hasAttribute("data-copy-code")
    ? button.closest(".code-block").querySelector("pre")
    : document.querySelector(button.dataset.copyTarget);
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(button.hasAttribute("data-copy-code") ? source.textContent : source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    window.getSelection().selectAllChildren(source);  // no clipboard access (http): select it for Ctrl+C
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
});
