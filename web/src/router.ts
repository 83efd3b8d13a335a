// A small history router: the path is a signal; links and `navigate` push
// entries, the back button pops them. Routes are matched in `main.tsx`.
import { signal } from "@preact/signals";

export const path = signal(location.pathname);
export const query = signal(new URLSearchParams(location.search));

export function navigate(to: string, replace = false): void {
  const url = new URL(to, location.origin);
  if (url.origin !== location.origin) {
    location.href = to;
    return;
  }
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  path.value = url.pathname;
  query.value = url.searchParams;
  window.scrollTo(0, 0);
}

window.addEventListener("popstate", () => {
  path.value = location.pathname;
  query.value = new URLSearchParams(location.search);
});

// Same-origin links navigate without a reload (modifier keys and new-tab
// targets keep the browser's behaviour).
document.addEventListener("click", (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const href = a.getAttribute("href");
  if (!href || href.startsWith("http") || href.startsWith("#") || href.startsWith("/api/") || href.startsWith("/media/")) return;
  e.preventDefault();
  navigate(href);
});

/** Matches `pattern` (`/c/:id`) against `p`; the named parts, or null. */
export function match(pattern: string, p: string): Record<string, string> | null {
  const a = pattern.split("/");
  const b = p.replace(/\/+$/, "").split("/");
  if (p === "/" && pattern === "/") return {};
  if (a.length !== b.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i].startsWith(":")) {
      try {
        out[a[i].slice(1)] = decodeURIComponent(b[i]);
      } catch {
        return null;
      }
    } else if (a[i] !== b[i]) return null;
  }
  return out;
}
