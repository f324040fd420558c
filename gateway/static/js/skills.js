// Levels from xp, with the catalog's curve: total xp to reach level L = floor(base * (L - 1) ** exponent).

export function xpForLevel(curve, level) {
  return Math.floor(curve.base * Math.max(0, level - 1) ** curve.exponent);
}

// {level, into, span, fraction}: how far the xp is between this level and the next
export function levelProgress(curve, level, xp) {
  if (level >= curve.max_level) return { level, into: 0, span: 0, fraction: 1 };
  const floor = xpForLevel(curve, level);
  const next = xpForLevel(curve, level + 1);
  const span = Math.max(1, next - floor);
  return { level, into: xp - floor, span, fraction: Math.min(1, Math.max(0, (xp - floor) / span)) };
}
