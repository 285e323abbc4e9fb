// Herald admin: the only script. It refreshes [data-refresh] regions in place and asks before
// submitting forms marked data-confirm. Every page works without it.
"use strict";

document.addEventListener("submit", (e) => {
  const msg = e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});

for (const region of document.querySelectorAll("[data-refresh]")) {
  const every = Number(region.dataset.refresh) * 1000;
  const refresh = async () => {
    try {
      const resp = await fetch(location.href, { credentials: "same-origin" });
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.querySelector("[data-refresh]");
      if (!fresh) {
        location.reload(); // logged out: show the login page
        return;
      }
      region.replaceChildren(...fresh.childNodes);
    } catch (err) {
      // The console is unreachable for a moment; try again at the next tick.
    }
    setTimeout(refresh, every);
  };
  setTimeout(refresh, every);
}
