// The model picker: the <select> (what the composer sends, and the picker without JavaScript) becomes a
// button and a type-to-filter list grouped by provider, with prices, context and capability tags.
// Keyboard: ↓/↑ move, Enter picks, Escape closes; every word typed must match (name, id, provider, or
// the tags "free", "vision", "tools").
(function () {
  const picker = document.getElementById("model-picker");
  const select = document.getElementById("model-select");
  if (!picker || !select) return;
  const button = document.getElementById("model-picker-button");
  const current = document.getElementById("model-picker-current");
  const panel = document.getElementById("model-picker-panel");
  const filter = document.getElementById("model-filter");
  const list = document.getElementById("model-options");
  const empty = document.getElementById("model-picker-empty");
  const count = document.getElementById("model-picker-count");

  const tag = (text, kind) => {
    const span = document.createElement("span");
    span.className = `picker-tag ${kind}`;
    span.textContent = text;
    return span;
  };

  // One list entry per <option>, under one group per <optgroup> ("auto" first, on its own).
  const entries = [];
  const groups = [];
  const addGroup = (label, options) => {
    const group = document.createElement("div");
    group.setAttribute("role", "group");
    group.className = "picker-group";
    if (label) {
      const heading = document.createElement("div");
      heading.className = "picker-group-label";
      heading.id = `model-group-${groups.length}`;
      heading.textContent = label;
      group.setAttribute("aria-labelledby", heading.id);
      group.append(heading);
    } else {
      group.setAttribute("aria-label", "Automatic");
    }
    const members = [];
    for (const option of options) {
      const data = option.dataset;
      const item = document.createElement("div");
      item.setAttribute("role", "option");
      item.id = `model-option-${entries.length}`;
      item.className = "picker-option";
      item.dataset.value = option.value;
      const name = document.createElement("span");
      name.className = "picker-name";
      name.textContent = data.name || option.textContent.trim();
      const meta = document.createElement("span");
      meta.className = "picker-meta";
      if (data.free) meta.append(tag("free", "free"));
      if (data.price) meta.append(tag(data.price, "price"));
      if (data.context) meta.append(tag(`${data.context} context`, "context"));
      if (data.vision) meta.append(tag("vision", "capability"));
      if (data.tools) meta.append(tag("tools", "capability"));
      item.append(name, meta);
      const words = [name.textContent, option.value, label || "auto", data.free ? "free" : "",
        data.vision ? "vision images" : "", data.tools ? "tools" : ""];
      const entry = { option, item, group: groups.length, text: words.join(" ").toLowerCase() };
      entries.push(entry);
      members.push(entry);
      group.append(item);
    }
    groups.push({ element: group, members });
    list.append(group);
  };
  addGroup("", [...select.children].filter((child) => child.tagName === "OPTION"));
  for (const optgroup of select.querySelectorAll("optgroup")) addGroup(optgroup.label, optgroup.querySelectorAll("option"));

  let active = null; // the entry Enter would pick

  const visible = () => entries.filter((entry) => !entry.item.hidden);
  const setActive = (entry) => {
    if (active) active.item.classList.remove("active");
    active = entry;
    if (entry) {
      entry.item.classList.add("active");
      filter.setAttribute("aria-activedescendant", entry.item.id);
      entry.item.scrollIntoView({ block: "nearest" });
    } else {
      filter.removeAttribute("aria-activedescendant");
    }
  };
  const applyFilter = () => {
    const terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const entry of entries) entry.item.hidden = !terms.every((term) => entry.text.includes(term));
    for (const group of groups) group.element.hidden = group.members.every((entry) => entry.item.hidden);
    const shown = visible();
    empty.hidden = shown.length > 0;
    count.textContent = terms.length ? `${shown.length} of ${entries.length} models` : `${entries.length} models`;
    if (!active || active.item.hidden) setActive(shown[0] || null);
  };
  const showCurrent = () => {
    const entry = entries.find((e) => e.option.value === select.value) || entries[0];
    current.textContent = entry.item.querySelector(".picker-name").textContent;
    for (const e of entries) e.item.setAttribute("aria-selected", e === entry ? "true" : "false");
    return entry;
  };
  const isOpen = () => !panel.hidden;
  const open = () => {
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    filter.value = "";
    active = null;
    applyFilter();
    setActive(showCurrent());
    filter.focus();
  };
  const close = (refocus) => {
    if (!isOpen()) return;
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  const choose = (entry) => {
    if (select.value !== entry.option.value) {
      select.value = entry.option.value;
      select.dispatchEvent(new Event("change", { bubbles: true })); // the estimate and attachments follow
    }
    showCurrent();
    close(true);
  };
  const move = (step) => {
    const shown = visible();
    if (!shown.length) return;
    const at = shown.indexOf(active);
    setActive(shown[Math.min(shown.length - 1, Math.max(0, at + step))]);
  };

  button.addEventListener("click", () => (isOpen() ? close(true) : open()));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") { event.preventDefault(); open(); }
  });
  filter.addEventListener("input", applyFilter);
  filter.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); move(1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); move(-1); }
    else if (event.key === "PageDown") { event.preventDefault(); move(10); }
    else if (event.key === "PageUp") { event.preventDefault(); move(-10); }
    else if (event.key === "Enter") { event.preventDefault(); if (active) choose(active); }
    else if (event.key === "Escape") { event.preventDefault(); close(true); } // not the chat's Escape (Stop)
    else if (event.key === "Tab") close(false);
  });
  list.addEventListener("click", (event) => {
    const item = event.target.closest(".picker-option");
    if (item) choose(entries.find((entry) => entry.item === item));
  });
  list.addEventListener("mousemove", (event) => {
    const item = event.target.closest(".picker-option");
    if (item && (!active || active.item !== item)) {
      if (active) active.item.classList.remove("active");
      active = entries.find((entry) => entry.item === item);
      item.classList.add("active");
      filter.setAttribute("aria-activedescendant", item.id);
    }
  });
  document.addEventListener("click", (event) => { if (isOpen() && !picker.contains(event.target)) close(false); });
  select.addEventListener("change", showCurrent); // also when set by other code (or a test)

  // The <select> stays the form's value but leaves the screen and the tab order to the button.
  picker.classList.add("enhanced");
  select.tabIndex = -1;
  select.setAttribute("aria-hidden", "true");
  document.getElementById("model-picker-label").htmlFor = button.id;
  button.hidden = false;
  showCurrent();
})();
