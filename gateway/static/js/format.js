// How numbers, times and names read on the page.

export function itemTitle(catalog, item) {
  return catalog?.items?.[item]?.title ?? item.replaceAll("_", " ");
}

export function targetTitle(catalog, activity, target) {
  const found = catalog?.activities?.[activity]?.targets?.find((t) => t.target === target);
  return found?.title ?? target.replaceAll("_", " ");
}

export function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

// "1.2 s", "3 min 05 s", "2 h 04 min"
export function duration(ms) {
  if (!Number.isFinite(ms)) return "–";
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function clock(at) {
  const date = at instanceof Date ? at : new Date(at);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// "in 4.2 s (10:32:05)" for a future time, "due now" once passed
export function eta(atMs, now) {
  if (atMs === null || atMs === undefined) return "–";
  const left = atMs - now;
  return left <= 0 ? "due now" : `in ${duration(left)} (${clock(new Date(atMs))})`;
}

export function percent(fraction) {
  return `${(Math.min(1, Math.max(0, fraction)) * 100).toFixed(1)}%`;
}

export function items(catalog, counts) {
  return Object.entries(counts ?? {})
    .map(([item, qty]) => `${qty} ${itemTitle(catalog, item)}`)
    .join(", ");
}
