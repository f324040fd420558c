// What a catalog target asks of the player, each line marked met or not.

import { capitalise, itemTitle } from "./format.js";

export function findTarget(catalog, activity, target) {
  return catalog.activities[activity].targets.find((t) => t.target === target);
}

// [{text, met}] for queueing `quantity` of the target, against the player's view (may be null)
export function requirements(catalog, activity, spec, player, quantity = 1) {
  const skill = catalog.activities[activity].skill;
  const skills = player?.skills ?? {};
  const equipment = player?.equipment ?? {};
  const inventory = player?.inventory ?? {};
  const levelOf = (name) => skills[name]?.level ?? 1;
  const out = [];
  const req = spec.requires ?? {};
  if (req.level) {
    out.push({ text: `${capitalise(skill)} level ${req.level}`, met: levelOf(skill) >= req.level });
  }
  if (req.tool) {
    const worn = equipment[req.tool];
    const what = worn ? `${itemTitle(catalog, worn.item)}` : "nothing";
    out.push({ text: `${capitalise(req.tool)} equipped (${what})`, met: Boolean(worn) });
  }
  if (req.station) {
    out.push({ text: `${itemTitle(catalog, req.station)} in your inventory`, met: (inventory[req.station] ?? 0) > 0 });
  }
  for (const [item, per] of Object.entries(req.materials ?? {})) {
    const need = per * quantity;
    const have = inventory[item] ?? 0;
    out.push({ text: `${need} ${itemTitle(catalog, item)} (${per} each; you have ${have})`, met: have >= need });
  }
  const location = spec.location ? catalog.locations[spec.location] : null;
  for (const [name, level] of Object.entries(req.location ?? {})) {
    out.push({ text: `${location?.title ?? spec.location}: ${name} level ${level}`, met: levelOf(name) >= level });
  }
  return out;
}

// "8 xp · 1 Oak log · rare: Amber (1%)"
export function rewardsText(catalog, activity, spec) {
  const r = spec.rewards ?? {};
  const parts = [];
  if (r.xp) parts.push(`${r.xp} ${catalog.activities[activity].skill} xp`);
  for (const [item, qty] of Object.entries(r.items ?? {})) parts.push(`${qty} ${itemTitle(catalog, item)}`);
  for (const drop of r.loot ?? []) parts.push(`${itemTitle(catalog, drop.item)} (${chance(drop.chance)})`);
  const rare = (r.rare ?? []).map((d) => `${itemTitle(catalog, d.item)} (${chance(d.chance)})`);
  if (rare.length) parts.push(`rare: ${rare.join(", ")}`);
  if (spec.success !== undefined) parts.push(`${chance(spec.success)} success`);
  return parts.join(" · ");
}

function chance(p) {
  return p >= 0.1 ? `${Math.round(p * 100)}%` : `${+(p * 100).toPrecision(2)}%`;
}
