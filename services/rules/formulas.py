"""Every number the game computes, as small pure functions (documented in docs/game-rules.md)."""

from __future__ import annotations

import math

from .catalog import Enemy, Gear, QualityTier, Tuning, XpCurve


def xp_for_level(level: int, curve: XpCurve) -> int:
    """Total xp needed to reach `level`: floor(base * (level - 1) ** exponent)."""
    if level <= 1:
        return 0
    needed: float = curve.base * (level - 1) ** curve.exponent
    return math.floor(needed)


def level_for_xp(xp: int, curve: XpCurve) -> int:
    """The highest level whose threshold `xp` reaches, capped at max_level."""
    level = 1
    while level < curve.max_level and xp >= xp_for_level(level + 1, curve):
        level += 1
    return level


def level_factor(level: int, required: int, tuning: Tuning) -> float:
    """Experience makes steps faster: 1 - speedup * levels above the requirement, floored."""
    return max(tuning.min_level_factor, 1.0 - tuning.level_speedup * max(0, level - required))


def step_seconds(base: float, level: int, required: int, gear_speed: float, time_scale: float, tuning: Tuning) -> float:
    """base * level factor * (1 - gear speed) * time_scale, rounded to milliseconds."""
    raw = base * level_factor(level, required, tuning) * (1.0 - gear_speed) * time_scale
    return max(tuning.min_step_seconds, round(raw, 3))


def craft_success_chance(base: float, level: int, required: int, tuning: Tuning) -> float:
    """The recipe's base chance plus success_per_level per level above the requirement, clamped."""
    chance = base + tuning.success_per_level * max(0, level - required)
    return min(tuning.max_success, max(tuning.min_success, chance))


def quality_tier(roll: float, level: int, required: int, tiers: list[QualityTier], tuning: Tuning) -> QualityTier:
    """score = roll + quality_per_level * levels above the requirement; the best tier it reaches."""
    score = roll + tuning.quality_per_level * max(0, level - required)
    best = tiers[0]
    for tier in tiers:
        if score >= tier.threshold:
            best = tier
    return best


def combat_rating(level: int, attack: int, defence: int) -> int:
    return 2 * level + attack + defence


def win_probability(level: int, weapon: Gear | None, armour: Gear | None, enemy: Enemy, tuning: Tuning) -> float:
    """A logistic of the rating difference, clamped to [min_win, max_win]."""
    mine = combat_rating(
        level, weapon.attack if weapon else 0, (weapon.defence if weapon else 0) + (armour.defence if armour else 0)
    )
    theirs = combat_rating(enemy.level, enemy.attack, enemy.defence)
    p = 1.0 / (1.0 + math.exp(-(mine - theirs) / tuning.combat_scale))
    return min(tuning.max_win, max(tuning.min_win, p))


def retry_backoff_seconds(failed_attempt: int, time_scale: float, tuning: Tuning) -> float:
    """Exponential: base * 2 ** (attempt - 1), capped, times time_scale, in milliseconds."""
    raw = min(tuning.retry_backoff_max_seconds, tuning.retry_backoff_seconds * 2 ** (failed_attempt - 1))
    return max(tuning.min_step_seconds, float(round(raw * time_scale, 3)))


def durability_loss(slot_role: str, won: bool, tuning: Tuning) -> int:
    """Wear of one step: tools and weapons 1, armour 1 (3 on a lost fight), per the tuning."""
    if slot_role == "armour":
        return tuning.armour_wear if won else tuning.armour_wear_on_loss
    if slot_role == "weapon":
        return tuning.weapon_wear
    return tuning.tool_wear


def scaled_xp(xp: int, factor: float) -> int:
    """xp times a multiplier, rounded half up, never below 1 when xp > 0 and factor > 0."""
    if xp <= 0 or factor <= 0:
        return 0
    return max(1, math.floor(xp * factor + 0.5))
