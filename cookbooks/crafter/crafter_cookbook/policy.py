"""The ``scripted`` policy: a plan-following agent whose every decision comes from the candidate text.

It is an honest offline stand-in for a model. It knows crafter's action names and one generic skill, a navigator
(breadth-first search over the visible map to the nearest thing a goal names, face it, press); everything else
(which goals, in which order, what to walk to, how many of an item to gather, what to avoid) is read from the plan.
It knows no recipe, no requirement and no material: it learns in-episode that a material blocks it when a move into
it fails, and it has to be told to avoid lava.

The plan language (one instruction per line; other lines, ``#`` comments and ``(...)`` notes are ignored, so the same
text can carry prose for the ``llm`` policy)::

    goal: <name> [at <thing>] [near <m>[+<m>...]] [until <item><op><n> | until <achievement>] [tries <n>] [explore <n>]
    rule: if <item><op><n> then <goal spec>
    avoid: <material>[, <material>...]

A goal's press is read from its name: ``collect_x``, ``eat_x`` and ``defeat_x`` press ``do`` facing ``x`` (or the
``at`` thing); any other name that is a crafter action (``place_table``, ``make_wood_pickaxe``, ``sleep``) presses
that action, first walking next to every ``near`` material when given, and facing the ``at`` thing when given.
A goal is done when its ``until`` condition holds; without one, when an achievement of its name has been unlocked
(or, for a plain action such as ``sleep``, after a press that changed something). It fails after ``tries`` presses
(default 5) that changed nothing, after ``explore`` steps (default 25) of searching without its target in reach,
or after 100 steps. Goals run in order; a failed goal is left behind. A rule interrupts the plan while its condition
holds (a failed rule rests 25 steps). The agent is deterministic: the same plan on the same world seed plays the
same episode.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from crafter_cookbook.game import ACTIONS, DIRECTIONS, Episode, Observation

__all__ = [
    "DEFAULT_EXPLORE",
    "DEFAULT_TRIES",
    "Condition",
    "EpisodeResult",
    "Goal",
    "GoalLog",
    "Plan",
    "Rule",
    "ScriptedAgent",
    "parse_plan",
    "run_scripted",
    "seed_plan",
]

DEFAULT_TRIES = 5
DEFAULT_EXPLORE = 25
MAX_GOAL_STEPS = 100
RULE_REST = 25
ORDER = ("left", "right", "up", "down")
SPIRAL = ("up", "right", "down", "left")
_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CONDITION = re.compile(r"^([a-z][a-z0-9_]*)(>=|<=|>|<|=)(\d+)$")
_RULE = re.compile(r"^if\s+(.+?)\s+then\s+(.+)$")


def seed_plan() -> str:
    """The seed candidate: one generic sentence for a model and a one-goal plan (collect wood)."""
    return "You play Crafter. Work through the goals in order.\ngoal: collect_wood at tree"


@dataclass(frozen=True, slots=True)
class Condition:
    """``item<op>n`` over the inventory and status, or an achievement name (unlocked)."""

    subject: str
    op: str | None = None
    value: int = 0

    def holds(self, obs: Observation) -> bool:
        if self.op is None:
            return self.subject in obs.achievements
        return _OPS[self.op](int(obs.inventory.get(self.subject, 0)), self.value)

    def __str__(self) -> str:
        return self.subject if self.op is None else f"{self.subject}{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    at: str | None = None
    near: tuple[str, ...] = ()
    until: Condition | None = None
    tries: int = DEFAULT_TRIES
    explore: int = DEFAULT_EXPLORE

    def __str__(self) -> str:
        parts = [self.name]
        if self.at:
            parts += ["at", self.at]
        if self.near:
            parts += ["near", "+".join(self.near)]
        if self.until is not None:
            parts += ["until", str(self.until)]
        if self.tries != DEFAULT_TRIES:
            parts += ["tries", str(self.tries)]
        if self.explore != DEFAULT_EXPLORE:
            parts += ["explore", str(self.explore)]
        return " ".join(parts)

    def press(self) -> tuple[str | None, str | None]:
        """(the action this goal presses, the thing it must face) from its name and ``at``."""
        verb, _, thing = self.name.partition("_")
        if verb in ("collect", "eat", "defeat") and thing:
            return "do", self.at or thing
        if self.name in ACTIONS:
            return self.name, self.at
        return None, self.at


@dataclass(frozen=True, slots=True)
class Rule:
    condition: Condition
    goal: Goal

    def __str__(self) -> str:
        return f"if {self.condition} then {self.goal}"


@dataclass(frozen=True, slots=True)
class Plan:
    goals: tuple[Goal, ...] = ()
    rules: tuple[Rule, ...] = ()
    avoid: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()
    """Instruction lines the parser could not read (reported in the feedback)."""


def _normalise(spec: str) -> str:
    spec = re.sub(r"\([^)]*\)", " ", spec.lower())  # (...) notes are comments
    return re.sub(r"\s*(>=|<=|>|<|=)\s*", r"\1", spec).strip().rstrip(".;")


def parse_condition(text: str) -> Condition | None:
    text = _normalise(text)
    match = _CONDITION.match(text)
    if match:
        return Condition(match.group(1), match.group(2), int(match.group(3)))
    return Condition(text) if _NAME.match(text) else None


def parse_goal(spec: str) -> Goal | str:
    """A goal spec (the text after ``goal:``), or the reason it cannot be read."""
    tokens = _normalise(spec).split()
    if not tokens or not _NAME.match(tokens[0]):
        return f"a goal needs a name first (got {spec.strip()!r})"
    fields: dict[str, Any] = {"name": tokens[0]}
    index = 1
    while index < len(tokens):
        key = tokens[index]
        value = tokens[index + 1] if index + 1 < len(tokens) else None
        if value is None:
            return f"{key!r} needs a value"
        if key == "at":
            fields["at"] = value
        elif key == "near":
            fields["near"] = tuple(part for part in value.split("+") if part)
        elif key == "until":
            condition = parse_condition(value)
            if condition is None:
                return f"cannot read the condition {value!r}"
            fields["until"] = condition
        elif key in ("tries", "explore") and value.isdigit():
            fields[key] = max(1, min(int(value), 200))
        else:
            return f"unknown word {key!r}"
        index += 2
    return Goal(**fields)


@lru_cache(maxsize=512)
def parse_plan(text: str) -> Plan:
    goals: list[Goal] = []
    rules: list[Rule] = []
    avoid: set[str] = set()
    problems: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        key, colon, rest = line.partition(":")
        key = key.strip().lower()
        if not colon or line.startswith("#") or key not in ("goal", "rule", "avoid"):
            continue
        if key == "avoid":
            avoid |= {word for word in re.split(r"[\s,]+", _normalise(rest)) if word}
        elif key == "goal":
            goal = parse_goal(rest)
            if isinstance(goal, Goal):
                goals.append(goal)
            else:
                problems.append(f"{line!r}: {goal}")
        else:
            match = _RULE.match(rest.strip().lower())
            condition = parse_condition(match.group(1)) if match else None
            goal = parse_goal(match.group(2)) if match else "write it as `rule: if <item><op><n> then <goal>`"
            if condition is None or condition.op is None:
                problems.append(f"{line!r}: a rule needs a condition like drink<3")
            elif isinstance(goal, str):
                problems.append(f"{line!r}: {goal}")
            else:
                rules.append(Rule(condition, goal))
    return Plan(tuple(goals), tuple(rules), frozenset(avoid), tuple(problems))


# ------------------------------------------------------------------------------------------------- the agent


@dataclass
class GoalLog:
    """What happened to one plan goal (or one rule) in the episode."""

    label: str
    status: str = "not reached"  # not reached | active | done | failed
    step: int | None = None
    reason: str | None = None
    press: str | None = None
    context: Observation | None = field(default=None, repr=False)
    """The observation of the last press that changed nothing (for the environment to explain)."""
    activations: int = 0


def _changed(before: Observation, after: Observation) -> bool:
    return (
        before.inventory != after.inventory
        or before.achievements != after.achievements
        or before.sleeping != after.sleeping
        or before.facing_cell()[0] != after.facing_cell()[0]
    )


class _Runner:
    """Pursues one goal step by step."""

    def __init__(self, agent: ScriptedAgent, goal: Goal, stop: Callable[[Observation], bool] | None = None) -> None:
        self.agent = agent
        self.goal = goal
        self.stop = stop
        self.action, self.target = goal.press()
        self.steps = 0
        self.explored = 0
        self.ineffective = 0
        self.effective = 0
        self.pending: Observation | None = None
        self.last_dud: Observation | None = None
        self.turn = 0
        self.reposition = False

    def finished(self, obs: Observation) -> bool:
        goal = self.goal
        if self.stop is not None and self.stop(obs):
            return True
        if goal.until is not None:
            return goal.until.holds(obs)
        if self.stop is not None:
            return False
        if goal.name in obs.achievements:
            return True
        plain = goal.name in ACTIONS and not goal.name.startswith(("place_", "make_"))
        return plain and self.effective > 0

    def step(self, obs: Observation) -> str | tuple[str, str]:
        """An action, or ``("done", "")`` / ``("failed", reason)``."""
        if self.pending is not None:
            if _changed(self.pending, obs):
                self.effective += 1
            else:
                self.ineffective += 1
                self.last_dud = self.pending
                self.reposition = True
            self.pending = None
        if self.finished(obs):
            return ("done", "")
        if self.action is None:
            return ("failed", f"{self.goal.name} is no crafter action and not collect_/eat_/defeat_ something")
        if self.ineffective >= self.goal.tries:
            return ("failed", f"{self.ineffective} presses of {self.action} changed nothing")
        if self.steps >= MAX_GOAL_STEPS:
            return ("failed", f"gave up after {MAX_GOAL_STEPS} steps")
        self.steps += 1
        agent = self.agent
        near = self.goal.near
        if self.target is not None:
            material, thing = obs.facing_cell()
            if self.target in (material, thing) and agent.near_ok(obs, 0, 0, near):
                return self._press(obs)
            move = agent.approach(obs, self.target, near)
        elif near:
            if agent.near_ok(obs, 0, 0, near):
                if self.reposition and self.action.startswith("place_"):
                    return self._turn()
                return self._press(obs)
            move = agent.approach(obs, None, near)
        else:
            if self.reposition and self.action.startswith("place_"):
                return self._turn()
            return self._press(obs)
        if move is not None:
            return move
        self.explored += 1
        if self.explored > self.goal.explore:
            wanted = self.target or "+".join(near)
            return ("failed", f"no {wanted} in reach in {self.goal.explore} steps of exploring")
        return agent.explore(obs)

    def _press(self, obs: Observation) -> str:
        assert self.action is not None
        self.pending = obs
        self.reposition = False
        return self.action

    def _turn(self) -> str:
        self.reposition = False
        direction = SPIRAL[self.turn % 4]
        self.turn += 1
        return f"move_{direction}"


class ScriptedAgent:
    """Plays a :class:`Plan`: rules first while they hold, then the goals in order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.blocked: set[str] = set()
        self.logs = [GoalLog(str(goal)) for goal in plan.goals]
        self.rule_logs = [GoalLog(f"rule: {rule}") for rule in plan.rules]
        self.index = 0
        self.runner: _Runner | None = None
        self.rule_runner: tuple[int, _Runner] | None = None
        self.rule_rest: dict[int, int] = {}
        self.heading = 0
        self.leg = 0
        self.leg_length = 8
        self.turns = 0
        self.previous: tuple[Observation, str] | None = None
        self.seen: set[str] = set()

    # --- the generic navigator --------------------------------------------------------------------------------

    def passable(self, obs: Observation, dx: int, dy: int) -> bool:
        material, thing = obs.cell(dx, dy)
        if (dx, dy) == (0, 0):
            return True
        return (
            material is not None
            and material != "outside"
            and thing is None
            and material not in self.blocked
            and material not in self.plan.avoid
        )

    def near_ok(self, obs: Observation, dx: int, dy: int, near: tuple[str, ...]) -> bool:
        if not near:
            return True
        around = {obs.cell(dx + ax, dy + ay)[0] for ax in (-1, 0, 1) for ay in (-1, 0, 1)}
        return all(material in around for material in near)

    def approach(self, obs: Observation, target: str | None, near: tuple[str, ...]) -> str | None:
        """The first move towards the nearest cell next to ``target`` (and within 1 of every ``near``), or a turn
        to face it when already there; None when nothing is in reach."""

        def is_target(dx: int, dy: int) -> bool:
            return target in obs.cell(dx, dy)

        def is_goal(dx: int, dy: int) -> bool:
            if not self.near_ok(obs, dx, dy, near):
                return False
            if target is None:
                return True
            return any(is_target(dx + ox, dy + oy) for ox, oy in DIRECTIONS.values())

        start = (0, 0)
        first: dict[tuple[int, int], str | None] = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if is_goal(*cell):
                move = first[cell]
                if move is not None:
                    return move
                for name in ORDER:  # already there: face the target
                    ox, oy = DIRECTIONS[name]
                    if target is not None and is_target(ox, oy):
                        return f"move_{name}"
                return None
            for name in ORDER:
                ox, oy = DIRECTIONS[name]
                nxt = (cell[0] + ox, cell[1] + oy)
                if nxt in first or not self.passable(obs, *nxt):
                    continue
                first[nxt] = first[cell] or f"move_{name}"
                queue.append(nxt)
        return None

    def explore(self, obs: Observation) -> str:
        """Walk an outward square spiral (legs 8, 8, 12, 12, ...), turning early where the way is blocked."""
        for _ in range(4):
            name = SPIRAL[self.heading]
            if self.leg < self.leg_length and self.passable(obs, *DIRECTIONS[name]):
                self.leg += 1
                return f"move_{name}"
            self.heading = (self.heading + 1) % 4
            self.leg = 0
            self.turns += 1
            if self.turns % 2 == 0:
                self.leg_length += 4
        return "noop"

    # --- the loop ---------------------------------------------------------------------------------------------

    def _learn(self, obs: Observation) -> None:
        self.seen |= obs.visible()
        if self.previous is None:
            return
        before, action = self.previous
        if action.startswith("move_") and not before.sleeping and obs.position == before.position:
            material, thing = before.cell(*DIRECTIONS[action[len("move_") :]])
            if thing is None and material not in (None, "outside"):
                self.blocked.add(str(material))

    @property
    def exhausted(self) -> bool:
        return self.index >= len(self.plan.goals) and not self.plan.rules

    def act(self, obs: Observation) -> str:
        self._learn(obs)
        action = self._decide(obs)
        self.previous = (obs, action)
        return action

    def _decide(self, obs: Observation) -> str:
        if obs.sleeping:
            return "noop"  # crafter keeps a sleeper asleep until energy is full; actions do nothing
        action = self._rules(obs)
        if action is not None:
            return action
        while self.index < len(self.plan.goals):
            log = self.logs[self.index]
            if self.runner is None:
                self.runner = _Runner(self, self.plan.goals[self.index])
                log.status, log.step = "active", obs.step
            outcome = self.runner.step(obs)
            if isinstance(outcome, str):
                return outcome
            self._close(log, self.runner, outcome, obs)
            self.runner = None
            self.index += 1
        return "noop"

    def _rules(self, obs: Observation) -> str | None:
        if self.rule_runner is not None:
            position, runner = self.rule_runner
            outcome = runner.step(obs)
            if isinstance(outcome, str):
                return outcome
            self._close(self.rule_logs[position], runner, outcome, obs)
            if outcome[0] == "failed":
                self.rule_rest[position] = obs.step + RULE_REST
            self.rule_runner = None
        for position, rule in enumerate(self.plan.rules):
            if self.rule_rest.get(position, -1) > obs.step or not rule.condition.holds(obs):
                continue
            if rule.goal.until is not None and rule.goal.until.holds(obs):
                continue
            condition = rule.condition
            runner = _Runner(self, rule.goal, stop=lambda o, c=condition: not c.holds(o))  # type: ignore[misc]
            self.rule_logs[position].activations += 1
            outcome = runner.step(obs)
            if isinstance(outcome, str):
                self.rule_runner = (position, runner)
                return outcome
            self._close(self.rule_logs[position], runner, outcome, obs)
            if outcome[0] == "failed":
                self.rule_rest[position] = obs.step + RULE_REST
        return None

    def _close(self, log: GoalLog, runner: _Runner, outcome: tuple[str, str], obs: Observation) -> None:
        log.status, log.step = outcome[0], obs.step
        if outcome[0] == "failed":
            log.reason = outcome[1]
            log.press = runner.action
            log.context = runner.last_dud

    def finish(self, obs: Observation) -> None:
        """Close the goal that was still running when the episode ended."""
        if self.runner is not None and self.index < len(self.logs):
            log = self.logs[self.index]
            log.status, log.step, log.reason = "active", obs.step, "the episode ended while it ran"
            log.press = self.runner.action
            log.context = self.runner.last_dud


@dataclass
class EpisodeResult:
    episode: Episode
    agent: ScriptedAgent
    actions: list[str]
    stopped_early: bool


def run_scripted(plan_text: str, seed: int, max_steps: int) -> EpisodeResult:
    """Play one episode of the plan on world ``seed``; it stops early once the plan is used up (no rules, awake):
    the remaining steps would be noops, which unlock nothing."""
    agent = ScriptedAgent(parse_plan(plan_text))
    episode = Episode(seed, max_steps)
    obs = episode.observe()
    actions: list[str] = []
    stopped = False
    while not episode.done:
        action = agent.act(obs)
        if agent.exhausted and action == "noop" and not obs.sleeping:
            stopped = True
            break
        episode.step(action)
        actions.append(action)
        obs = episode.observe()
    agent.finish(obs)
    return EpisodeResult(episode, agent, actions, stopped)
