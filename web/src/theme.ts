// Dark and light themes: the system's by default, or the one the person chose.
import { signal } from "@preact/signals";

export type Theme = "system" | "light" | "dark";
const KEY = "videosync.theme";

export const theme = signal<Theme>((localStorage.getItem(KEY) as Theme | null) ?? "system");

export function applyTheme(t: Theme): void {
  theme.value = t;
  if (t === "system") {
    localStorage.removeItem(KEY);
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem(KEY, t);
    document.documentElement.dataset.theme = t;
  }
}

export function cycleTheme(): void {
  const dark = theme.value === "dark" || (theme.value === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  applyTheme(dark ? "light" : "dark");
}

applyTheme(theme.value);
