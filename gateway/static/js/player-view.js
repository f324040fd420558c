// The player: skills with levels and xp bars, equipment with durability, the inventory.

import { $, h, replaceChildren } from "./dom.js";
import { capitalise, itemTitle, percent } from "./format.js";
import { levelProgress } from "./skills.js";

export class PlayerView {
  constructor(root, store) {
    this.root = root;
    this.store = store;
    store.addEventListener("change", ({ detail }) => {
      if (detail.what === "player" || detail.what === "catalog") this.render();
    });
  }

  render() {
    const { catalog, player } = this.store;
    if (!catalog || !player) return;
    this.renderSkills(catalog, player);
    this.renderEquipment(catalog, player);
    this.renderInventory(catalog, player);
  }

  renderSkills(catalog, player) {
    replaceChildren(
      $("#skills", this.root),
      Object.entries(catalog.skills).map(([name, { xp_curve: curve }]) => {
        const skill = player.skills[name] ?? { level: 1, xp: 0 };
        const p = levelProgress(curve, skill.level, skill.xp);
        return h(
          "li",
          { dataset: { skill: name, level: skill.level } },
          h("span", { class: "name" }, capitalise(name)),
          h("span", { class: "level" }, `level ${skill.level}`),
          h(
            "span",
            { class: "bar xp-bar", role: "progressbar", "aria-label": `${name} xp`, "aria-valuenow": p.into, "aria-valuemax": p.span },
            h("span", { class: "fill", style: { width: percent(p.fraction) } }),
            h("span", { class: "label" }, p.span ? `${p.into} / ${p.span} xp` : `${skill.xp} xp (max)`),
          ),
        );
      }),
    );
  }

  renderEquipment(catalog, player) {
    const worn = Object.entries(player.equipment ?? {});
    replaceChildren(
      $("#equipment", this.root),
      worn.length === 0 ? h("li", { class: "muted" }, "Nothing equipped.") : null,
      worn.map(([slot, { item, durability }]) => {
        const max = catalog.equipment?.[item]?.durability ?? durability;
        const fraction = max ? durability / max : 1;
        return h(
          "li",
          { dataset: { slot, item } },
          h("span", { class: "name" }, `${capitalise(slot)}: ${itemTitle(catalog, item)}`),
          h(
            "span",
            { class: `bar durability-bar${fraction < 0.2 ? " low" : ""}`, role: "progressbar", "aria-label": `${slot} durability`, "aria-valuenow": durability, "aria-valuemax": max },
            h("span", { class: "fill", style: { width: percent(fraction) } }),
            h("span", { class: "label" }, `${durability} / ${max}`),
          ),
        );
      }),
    );
  }

  renderInventory(catalog, player) {
    const items = Object.entries(player.inventory ?? {}).sort(([a], [b]) =>
      itemTitle(catalog, a).localeCompare(itemTitle(catalog, b)),
    );
    const reserved = Object.entries(player.reserved ?? {}).filter(([, qty]) => qty > 0);
    replaceChildren(
      $("#inventory", this.root),
      items.length === 0 ? h("li", { class: "muted" }, player.version === 0 ? "Empty: your starter kit arrives with your first command." : "Empty.") : null,
      items.map(([item, qty]) =>
        h(
          "li",
          { dataset: { item, kind: catalog.items?.[item]?.kind ?? "" } },
          h("span", { class: "name" }, itemTitle(catalog, item)),
          h("span", { class: "qty" }, qty),
        ),
      ),
      reserved.map(([item, qty]) =>
        h("li", { class: "reserved muted", dataset: { reserved: item } }, `${qty} ${itemTitle(catalog, item)} held for the running task`),
      ),
    );
  }
}
