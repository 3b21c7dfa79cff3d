"""The rollout's feedback for the proposer: what the episode unlocked, what the plan's goals did, and, for a goal
that failed, what crafter's rules say it lacked (the environment's error message).

Everything the environment adds is read from crafter's own ``data.yaml`` (see :mod:`crafter_cookbook.game`) and
written in the plan's words, in square brackets the offline proposer reads::

    goal 2 `place_table`: failed at step 31: 5 presses of place_table changed nothing; place_table needs wood>=2
        (had 1) [source of wood: goal: collect_wood at tree]
    goal 5 `collect_drink`: failed at step 80: no drink in reach in 25 steps of exploring [meaning: goal:
        collect_drink at water]
    drink ran out at step 183 [restore: goal: collect_drink at water]
    locked achievements: collect_coal [meaning: goal: collect_coal at coal]; ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crafter_cookbook.game import (
    ACHIEVEMENTS,
    STATUS,
    Episode,
    achievement_hint,
    placed_by,
    recipe,
    restore_hint,
    unmet_requirements,
)
from crafter_cookbook.policy import Goal, GoalLog, Plan, parse_goal

__all__ = ["compress_actions", "goal_lines", "outcome_lines", "scripted_feedback"]


def compress_actions(actions: Sequence[str], limit: int = 600) -> str:
    """Actions run-length encoded (``move_left x3, do``), cut to ``limit`` characters."""
    parts: list[str] = []
    index = 0
    while index < len(actions):
        end = index
        while end < len(actions) and actions[end] == actions[index]:
            end += 1
        count = end - index
        parts.append(actions[index] if count == 1 else f"{actions[index]} x{count}")
        index = end
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def outcome_lines(episode: Episode, seen: set[str] | None = None) -> list[str]:
    """Reward, achievements, inventory and status at the end, what was seen, what ran out, and what is locked."""
    unlocked = ", ".join(f"{name} (step {episode.unlock_steps[name]})" for name in episode.unlocked) or "none"
    end = f"died at step {episode.steps}: {episode.death_cause()}" if episode.dead else "alive"
    inventory = episode.env._player.inventory
    items = [f"{name} {value}" for name, value in inventory.items() if name not in STATUS and value > 0]
    lines = [
        f"reward {episode.reward} (achievements unlocked: {unlocked}); {episode.steps} steps played; {end}",
        "inventory at the end: "
        + (", ".join(items) if items else "empty")
        + "; status: "
        + ", ".join(f"{name} {inventory[name]}" for name in STATUS),
    ]
    if seen:
        lines.append("seen: " + ", ".join(sorted(seen - {"outside"})))
    for status, step in sorted(episode.ran_out.items(), key=lambda item: item[1]):
        hint = restore_hint(status)
        lines.append(f"{status} ran out at step {step}" + (f" [restore: {hint}]" if hint else ""))
    locked = [name for name in ACHIEVEMENTS if name not in episode.unlocked]
    if locked:
        lines.append(
            "locked achievements: " + "; ".join(f"{name} [meaning: {achievement_hint(name)}]" for name in locked)
        )
    return lines


def _explain(log: GoalLog) -> str:
    """The environment's account of a failed goal: crafter's unmet requirements at its last ineffective press, and
    what the goal's name means when the plan pursued it differently."""
    notes: list[str] = []
    if log.press and log.context is not None:
        for unmet in unmet_requirements(log.press, log.context):
            note = unmet.text
            if unmet.kind == "item" and unmet.fix:
                note += f" [source of {unmet.item}: {unmet.fix}]"
            elif unmet.kind == "nearby" and unmet.fix:
                note += f" [source: {unmet.fix}]"
            elif unmet.kind == "chance" and unmet.fix:
                note += f" [hint: {unmet.fix}]"
            elif unmet.kind == "energy" and unmet.fix:
                note += f" [condition: {unmet.fix}]"
            notes.append(note)
    goal = parse_goal(log.label)
    if isinstance(goal, Goal) and log.reason and "steps of exploring" in log.reason:
        # what the agent looked for and never found may be something the player builds
        for thing in dict.fromkeys((*goal.near, *([goal.at] if goal.at else []))):
            source = recipe(placed_by(thing))
            if source:
                notes.append(f"needs a {thing} nearby (within 1 tile), and none was in reach [source: {source}]")
    if isinstance(goal, Goal) and goal.name in ACHIEVEMENTS:
        meaning = achievement_hint(goal.name)
        hinted = parse_goal(meaning.partition(":")[2])
        if isinstance(hinted, Goal) and (
            hinted.name != goal.name
            or (hinted.at is not None and hinted.at != goal.at)
            or not set(hinted.near) <= set(goal.near)
        ):
            notes.append(f"[meaning: {meaning}]")
    return "; ".join(notes)


def goal_lines(plan: Plan, logs: Sequence[GoalLog], rule_logs: Sequence[GoalLog]) -> list[str]:
    lines: list[str] = []
    for number, log in enumerate(logs, start=1):
        head = f"goal {number} `{log.label}`: "
        if log.status == "done":
            lines.append(head + f"done at step {log.step}")
        elif log.status == "not reached":
            lines.append(head + "not reached")
        else:
            word = "failed" if log.status == "failed" else "still running"
            text = head + f"{word} at step {log.step}: {log.reason}"
            explanation = _explain(log)
            lines.append(text + ("; " + explanation if explanation else ""))
    for number, log in enumerate(rule_logs, start=1):
        text = f"rule {number} `{log.label.removeprefix('rule: ')}`: ran {log.activations} time(s)"
        if log.status == "failed":
            text += f", last failed at step {log.step}: {log.reason}"
        lines.append(text)
    for problem in plan.problems:
        lines.append(f"plan line not understood: {problem}")
    if not plan.goals and not plan.rules:
        lines.append("the plan has no goal: lines, so the agent did nothing")
    return lines


def scripted_feedback(
    plan: Plan, episode: Episode, logs: Sequence[GoalLog], rule_logs: Sequence[GoalLog], seen: set[str]
) -> dict[str, Any]:
    """``actionable_side_info`` for a scripted rollout: the text (``feedback``) and the same facts as fields."""
    lines = outcome_lines(episode, seen) + goal_lines(plan, logs, rule_logs)
    goals = [{"goal": log.label, "status": log.status, "step": log.step, "reason": log.reason} for log in logs]
    return {
        "feedback": "\n".join(lines),
        "achievements": list(episode.unlocked),
        "inventory": {name: int(value) for name, value in episode.env._player.inventory.items()},
        "goals": goals,
        "died": episode.dead,
    }
