"""The studio's page-wide CSS and its keyboard shortcuts (JavaScript run once when the page loads).

Pictures are 64 px: wherever they are shown large they are scaled nearest-neighbour, never blurred.
On a phone (390 px) rows stack and wide tables scroll inside their own box, so no column is cut off.
"""

from __future__ import annotations

CSS = """
#whoami { text-align: right; }
#progress { min-height: 1.5em; }
#progress .progress-panel { display: flex; flex-direction: column; gap: 0.3em; }
#progress progress.bar { width: 100%; height: 0.9em; accent-color: var(--color-accent); }
#progress .previews { display: flex; flex-wrap: wrap; gap: 0.4em; }
#progress img.preview { width: 96px; height: 96px; object-fit: contain;
  border: 1px solid var(--border-color-primary); }
#sign-out { flex: 0 0 auto !important; min-width: 0 !important; width: auto !important; }
#sign-out-btn { white-space: nowrap; padding: 0.4em 1.2em; border-radius: var(--button-large-radius); }
#review-image img, #review-gallery img, #history-gallery img, #history-results img, #gallery img,
.recipe img, .review-context img, #inbox-list img, #progress img { image-rendering: pixelated; }
#review-image img { width: 100%; height: 100%; object-fit: contain; }
#review-gallery .thumbnail-item.selected { outline: 4px solid var(--color-accent); outline-offset: 2px; }
.recipe dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 0.8em; margin: 0; }
.recipe dt { font-weight: 600; }
.recipe dd { margin: 0; overflow-wrap: anywhere; }
.recipe img.thumb, .review-context img.thumb, #inbox-list img.thumb, .history-card img.thumb {
  display: inline-block; width: 64px; height: 64px; margin: 0; object-fit: contain; vertical-align: middle;
  border: 1px solid var(--border-color-primary); }
.recipe ul.mix { margin: 0; padding-left: 1.2em; }
.review-context .siblings { display: flex; flex-wrap: wrap; gap: 0.6em; }
.review-context figure { margin: 0; text-align: center; }
.review-context figure.current img { outline: 3px solid var(--color-accent); }
.review-context figure img.thumb { width: 96px; height: 96px; }
.history-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 0.6em; }
.history-card { display: flex; flex-direction: column; gap: 0.2em; text-align: left; cursor: pointer;
  border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 0.5em; overflow-wrap: anywhere;
  background: var(--block-background-fill); color: var(--body-text-color); font: inherit; }
.history-card:hover, .history-card:focus { border-color: var(--color-accent); }
.history-card .thumbs { display: flex; gap: 0.3em; flex-wrap: wrap; }
ul.inbox { list-style: none; padding: 0; margin: 0; }
.inbox-item { display: flex; gap: 0.8em; align-items: flex-start; padding: 0.5em 0; overflow-wrap: anywhere;
  border-bottom: 1px solid var(--border-color-primary); }
.inbox-item blockquote { margin: 0.3em 0; padding-left: 0.6em; border-left: 3px solid var(--color-accent); }
.inbox-revise { cursor: pointer; padding: 0.2em 0.8em; border: 1px solid var(--border-color-primary);
  border-radius: 4px; background: var(--button-secondary-background-fill); color: inherit; font: inherit; }
#gallery .thumbnail-item.selected { outline: 4px solid var(--color-accent); outline-offset: 2px; }
@media (max-width: 480px) {
  .gradio-container { padding: 4px !important; }
  .table-wrap, .table-container { overflow-x: auto; }
  #review-image { height: auto !important; }
}
"""

SHORTCUTS_JS = """
() => {
  if (window.draftroomShortcuts) return;
  window.draftroomShortcuts = true;
  const typing = (target) => target instanceof Element
    && target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  const shown = (id) => { const el = document.getElementById(id); return el && el.offsetParent !== null ? el : null; };
  const reviewKeys = { a: "review-approve", r: "review-reject", c: "review-changes", j: "review-next",
                       k: "review-prev" };
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (event.target instanceof Element && event.target.closest("#prompt")) {
        const generate = shown("generate");
        if (generate && !generate.disabled) { event.preventDefault(); generate.click(); }
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event.target)) return;
    const id = reviewKeys[event.key.toLowerCase()];
    if (!id || !shown("review-image")) return;
    const button = shown(id);
    if (button && !button.disabled) { event.preventDefault(); button.click(); }
  }, true);
}
"""
