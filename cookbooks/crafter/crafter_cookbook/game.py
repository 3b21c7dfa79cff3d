"""The real ``crafter`` game (PyPI), made exact and fast, and the text the policies see.

Three things here, all about the environment (none of it is policy knowledge):

- :class:`ExactEnv`: ``crafter.Env`` with two changes that leave the game's rules alone. It draws no pixels
  (``_obs`` returns None: the policies read the world state, and drawing was most of a step's cost), and when the
  chunk balancer despawns a creature it picks from the chunk's creatures in the world's object order instead of a
  ``set``'s order (which follows memory addresses, so crafter's own episodes are not a pure function of the seed).
- :class:`WorldCache` and :class:`Episode`: an episode on world seed ``S`` is ``crafter.Env(seed=S).reset()`` (its
  first episode). Generating a world takes about a second, so each seed's freshly reset environment is kept and
  every episode plays on a ``copy.deepcopy`` of it: the same state, and the same random generator state, as a new
  reset (a test checks that a copy and a fresh reset play identically).
- the environment's own rules, read from crafter's ``data.yaml`` (``crafter.constants``): what a ``do``, ``place_*``
  or ``make_*`` press needed that was missing (:func:`unmet_requirements`), where an item comes from
  (:func:`source_of`) and what each achievement means in plan words (:func:`achievement_hint`). The container uses
  them to explain failures to the proposer, the way a game's error message would.
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():
    # crafter and its dependencies (imageio, ruamel.yaml, opensimplex) may warn about deprecations on import
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import crafter
    from crafter import constants

__all__ = [
    "ACHIEVEMENTS",
    "ACTIONS",
    "CRAFTER_VERSION",
    "MATERIALS",
    "STATUS",
    "VIEW",
    "WORLDS",
    "Episode",
    "ExactEnv",
    "Observation",
    "Unmet",
    "WorldCache",
    "achievement_hint",
    "placed_by",
    "recipe",
    "render_text",
    "restore_hint",
    "source_of",
    "unmet_requirements",
]

CRAFTER_VERSION: str = str(getattr(crafter, "__version__", "unknown"))
ACTIONS: tuple[str, ...] = tuple(constants.actions)
ACHIEVEMENTS: tuple[str, ...] = tuple(constants.achievements)
MATERIALS: tuple[str, ...] = tuple(constants.materials)
STATUS: tuple[str, ...] = ("health", "food", "drink", "energy")
ITEM_MAX: dict[str, int] = {name: int(info["max"]) for name, info in constants.items.items()}
# crafter's local view: 9 columns by 7 rows around the player (its 9x9 view minus the two inventory rows)
VIEW: tuple[int, int] = (9, 7)
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
OBJECT_NAMES: dict[str, str] = {
    "Player": "player",
    "Cow": "cow",
    "Zombie": "zombie",
    "Skeleton": "skeleton",
    "Arrow": "arrow",
    "Plant": "plant",
    "Fence": "fence",
}
SYMBOLS: dict[str, str] = {
    "grass": ".",
    "sand": ":",
    "path": "_",
    "water": "~",
    "lava": "%",
    "tree": "T",
    "stone": "#",
    "coal": "c",
    "iron": "i",
    "diamond": "d",
    "table": "t",
    "furnace": "f",
    "cow": "C",
    "zombie": "Z",
    "skeleton": "S",
    "arrow": "a",
    "plant": "p",
    "fence": "=",
    "outside": " ",
}


class ExactEnv(crafter.Env):  # type: ignore[misc]
    """``crafter.Env`` without pixels and with a deterministic despawn choice (the rules are crafter's)."""

    def _obs(self) -> None:
        return None

    def render(self, size: Any = None) -> Any:  # pragma: no cover - pixels are never used
        raise NotImplementedError("the crafter cookbook plays without pixels; read the world state instead")

    def _object_index(self, obj: Any) -> int:
        return int(self._world._obj_map[tuple(obj.pos)])

    def _balance_object(
        self,
        chunk: tuple[int, int, int, int],
        objs: Iterable[Any],
        cls: type,
        material: str,
        span_dist: float,
        despan_dist: float,
        spawn_prob: float,
        despawn_prob: float,
        ctor: Callable[[Any], Any],
        target_fn: Callable[[int, int], tuple[float, float]],
    ) -> None:
        # crafter 1.8.3's Env._balance_object, with the creatures listed in the world's object order
        import numpy as np

        xmin, xmax, ymin, ymax = chunk
        random = self._world.random
        creatures = sorted((obj for obj in objs if isinstance(obj, cls)), key=self._object_index)
        mask = self._world.mask(*chunk, material)
        target_min, target_max = target_fn(len(creatures), mask.sum())
        if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
            xs = np.tile(np.arange(xmin, xmax)[:, None], [1, ymax - ymin])
            ys = np.tile(np.arange(ymin, ymax)[None, :], [xmax - xmin, 1])
            xs, ys = xs[mask], ys[mask]
            i = random.randint(0, len(xs))
            pos = np.array((xs[i], ys[i]))
            empty = self._world[pos][1] is None
            away = self._player.distance(pos) >= span_dist
            if empty and away:
                self._world.add(ctor(pos))
        elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
            obj = creatures[random.randint(0, len(creatures))]
            away = self._player.distance(obj.pos) >= despan_dist
            if away:
                self._world.remove(obj)


class WorldCache:
    """Each world seed's freshly reset environment, generated once per process; episodes play on deep copies."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._worlds: OrderedDict[int, ExactEnv] = OrderedDict()
        self._lock = threading.Lock()
        self._seed_locks: dict[int, threading.Lock] = {}
        self.generated = 0

    def fresh(self, seed: int, length: int) -> ExactEnv:
        """An environment in the state ``crafter.Env(seed=seed, length=length).reset()`` leaves it in."""
        with self._lock:
            seed_lock = self._seed_locks.setdefault(seed, threading.Lock())
        with seed_lock:
            with self._lock:
                pristine = self._worlds.get(seed)
                if pristine is not None:
                    self._worlds.move_to_end(seed)
            if pristine is None:
                pristine = reset_env(seed, length)
                with self._lock:
                    self._worlds[seed] = pristine
                    self.generated += 1
                    while len(self._worlds) > self.capacity:
                        self._worlds.popitem(last=False)
            env = copy.deepcopy(pristine)
        env._length = length
        return env


def reset_env(seed: int, length: int) -> ExactEnv:
    """A new environment on world seed ``seed``, reset once (crafter's first episode of that seed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = ExactEnv(length=length, seed=seed)
        env.reset()
    return env


WORLDS = WorldCache()


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees at one step: the local view, the inventory and status, the facing direction."""

    step: int
    max_steps: int
    position: tuple[int, int]
    facing: tuple[int, int]
    grid: tuple[tuple[str, ...], ...]
    """``grid[row][col]``: the material in view, rows top to bottom (y), columns left to right (x); the player is at
    the centre (``VIEW[1] // 2``, ``VIEW[0] // 2``); ``outside`` beyond the world's edge."""
    objects: Mapping[tuple[int, int], str]
    """Creatures and plants in view by offset ``(dx, dy)`` from the player (the player itself is not listed)."""
    inventory: Mapping[str, int]
    """All of crafter's inventory, status values (health, food, drink, energy) included."""
    sleeping: bool
    achievements: tuple[str, ...]
    """Achievements unlocked so far in this episode, in unlock order."""
    last_action: str | None = None

    def cell(self, dx: int, dy: int) -> tuple[str | None, str | None]:
        """(material, object) at offset ``(dx, dy)`` from the player; (None, None) beyond the view."""
        col, row = dx + VIEW[0] // 2, dy + VIEW[1] // 2
        if not (0 <= col < VIEW[0] and 0 <= row < VIEW[1]):
            return None, None
        return self.grid[row][col], self.objects.get((dx, dy))

    def facing_cell(self) -> tuple[str | None, str | None]:
        return self.cell(*self.facing)

    def nearby_materials(self, distance: int = 1) -> set[str]:
        """Materials within ``distance`` (diagonals too), as crafter's ``World.nearby`` counts them for ``make_*``."""
        found: set[str] = set()
        for dy in range(-distance, distance + 1):
            for dx in range(-distance, distance + 1):
                material, _ = self.cell(dx, dy)
                if material is not None:
                    found.add(material)
        return found

    def visible(self) -> set[str]:
        """Every material and object name in view."""
        names = {material for row in self.grid for material in row if material != "outside"}
        return names | set(self.objects.values())


def facing_name(facing: tuple[int, int]) -> str:
    return next(name for name, offset in DIRECTIONS.items() if offset == facing)


def _observe(env: ExactEnv, unlocked: list[str], last_action: str | None) -> Observation:
    world, player = env._world, env._player
    px, py = int(player.pos[0]), int(player.pos[1])
    half_w, half_h = VIEW[0] // 2, VIEW[1] // 2
    rows: list[tuple[str, ...]] = []
    for dy in range(-half_h, half_h + 1):
        row: list[str] = []
        for dx in range(-half_w, half_w + 1):
            material, _ = world[(px + dx, py + dy)]
            row.append(str(material) if material is not None else "outside")
        rows.append(tuple(row))
    objects: dict[tuple[int, int], str] = {}
    for obj in world.objects:
        dx, dy = int(obj.pos[0]) - px, int(obj.pos[1]) - py
        if obj is player or abs(dx) > half_w or abs(dy) > half_h:
            continue
        objects[(dx, dy)] = OBJECT_NAMES.get(type(obj).__name__, type(obj).__name__.lower())
    return Observation(
        step=int(env._step or 0),
        max_steps=int(env._length),
        position=(px, py),
        facing=(int(player.facing[0]), int(player.facing[1])),
        grid=tuple(rows),
        objects=objects,
        inventory={name: int(value) for name, value in player.inventory.items()},
        sleeping=bool(player.sleeping),
        achievements=tuple(unlocked),
        last_action=last_action,
    )


@dataclass
class Episode:
    """One crafter episode on one world seed, stepped by action name. ``reward`` is the number of achievements
    unlocked (each counts once, as crafter's ``info['achievements']`` reports them)."""

    seed: int
    max_steps: int
    cache: WorldCache = field(default=WORLDS, repr=False)
    env: ExactEnv = field(init=False, repr=False)
    unlocked: list[str] = field(init=False, default_factory=list)
    unlock_steps: dict[str, int] = field(init=False, default_factory=dict)
    done: bool = field(init=False, default=False)
    last_action: str | None = field(init=False, default=None)
    ran_out: dict[str, int] = field(init=False, default_factory=dict)
    """Status values (food, drink, energy) that reached 0, with the first step they did."""

    def __post_init__(self) -> None:
        self.env = self.cache.fresh(self.seed, self.max_steps)

    @property
    def steps(self) -> int:
        return int(self.env._step or 0)

    @property
    def reward(self) -> int:
        return len(self.unlocked)

    @property
    def dead(self) -> bool:
        return int(self.env._player.health) <= 0

    def observe(self) -> Observation:
        return _observe(self.env, self.unlocked, self.last_action)

    def step(self, action: str) -> None:
        if self.done:
            raise RuntimeError("the episode is over")
        if action not in ACTIONS:
            raise ValueError(f"unknown crafter action {action!r}")
        _, _, done, info = self.env.step(ACTIONS.index(action))
        self.last_action = action
        for name, count in info["achievements"].items():
            if count > 0 and name not in self.unlock_steps:
                self.unlock_steps[name] = self.steps
                self.unlocked.append(name)
        for name in ("food", "drink", "energy"):
            if info["inventory"][name] <= 0 and name not in self.ran_out:
                self.ran_out[name] = self.steps
        self.done = bool(done)

    def death_cause(self) -> str | None:
        """Why the player died, from the final world state (None when alive)."""
        if not self.dead:
            return None
        world, player = self.env._world, self.env._player
        px, py = int(player.pos[0]), int(player.pos[1])
        if world[(px, py)][0] == "lava":
            return "walked into lava"
        near = sorted(
            {
                OBJECT_NAMES.get(type(obj).__name__, "?")
                for obj in world.objects
                if obj is not player and abs(int(obj.pos[0]) - px) + abs(int(obj.pos[1]) - py) <= 2
            }
            & {"zombie", "skeleton", "arrow"}
        )
        if near:
            fights = "; ".join(f"goal: defeat_{name} at {name}" for name in near if f"defeat_{name}" in ACHIEVEMENTS)
            return f"health fell to 0 next to a {' and a '.join(near)}" + (f" [defend: {fights}]" if fights else "")
        empty = [name for name in ("food", "drink", "energy") if player.inventory[name] <= 0]
        return f"health fell to 0 ({', '.join(empty)} at 0)" if empty else "health fell to 0"


def render_text(obs: Observation) -> str:
    """The text observation: status, inventory, facing, achievements and the local map with a legend."""
    inventory = [f"{name} {value}" for name, value in obs.inventory.items() if name not in STATUS and value > 0]
    material, thing = obs.facing_cell()
    facing = f"{facing_name(obs.facing)} ({thing or material or 'nothing'})"
    lines = [
        f"step {obs.step} of {obs.max_steps}",
        "status: " + ", ".join(f"{name} {obs.inventory.get(name, 0)}/9" for name in STATUS),
        "inventory: " + (", ".join(inventory) if inventory else "empty"),
        f"facing: {facing}" + ("; you are asleep" if obs.sleeping else ""),
        "achievements so far: " + (", ".join(obs.achievements) if obs.achievements else "none"),
    ]
    if obs.last_action:
        lines.append(f"last action: {obs.last_action}")
    lines.append(f"map ({VIEW[0]} wide, {VIEW[1]} tall; you are @ in the middle; up is north):")
    used: dict[str, str] = {}
    for row_index, row in enumerate(obs.grid):
        cells = []
        for col_index, material in enumerate(row):
            dx, dy = col_index - VIEW[0] // 2, row_index - VIEW[1] // 2
            if (dx, dy) == (0, 0):
                cells.append("@")
                continue
            name = obs.objects.get((dx, dy)) or material
            symbol = SYMBOLS.get(name, "?")
            used[symbol] = name
            cells.append(symbol)
        lines.append("  " + " ".join(cells))
    lines.append("legend: @ you, " + ", ".join(f"{symbol} {name}" for symbol, name in sorted(used.items())))
    nearest = _nearest(obs)
    if nearest:
        lines.append("nearest: " + "; ".join(nearest))
    return "\n".join(lines)


def _nearest(obs: Observation) -> list[str]:
    best: dict[str, tuple[int, int, int]] = {}
    half_w, half_h = VIEW[0] // 2, VIEW[1] // 2
    for dy in range(-half_h, half_h + 1):
        for dx in range(-half_w, half_w + 1):
            if (dx, dy) == (0, 0):
                continue
            material, thing = obs.cell(dx, dy)
            for name in (material, thing):
                if name in (None, "grass", "outside"):
                    continue
                distance = abs(dx) + abs(dy)
                if name not in best or distance < best[name][0]:
                    best[str(name)] = (distance, dx, dy)
    out = []
    for name, (_, dx, dy) in sorted(best.items(), key=lambda item: (item[1][0], item[0])):
        parts = []
        if dx:
            parts.append(f"{abs(dx)} {'left' if dx < 0 else 'right'}")
        if dy:
            parts.append(f"{abs(dy)} {'up' if dy < 0 else 'down'}")
        out.append(f"{name} {' '.join(parts)}")
    return out


# ----------------------------------------------------------------------------------- the environment's rules


@dataclass(frozen=True, slots=True)
class Unmet:
    """One thing a press needed and did not have, as crafter's rules say."""

    kind: str  # item | nearby | target | chance | energy | none
    text: str
    fix: str | None = None
    """A plan line that would supply what was missing, when the rules name one."""
    item: str | None = None
    need: int = 0
    have: int = 0


def source_of(item: str) -> str | None:
    """The plan goal that yields ``item`` by crafter's rules: collected, made or placed."""
    for material, info in constants.collect.items():
        if item in info["receive"]:
            return f"goal: collect_{item} at {material}"
    if item in constants.make:
        return f"goal: make_{item} near {'+'.join(constants.make[item]['nearby'])}"
    if item in constants.place:
        return f"goal: place_{item}"
    return None


def recipe(goal_line: str | None) -> str | None:
    """``goal_line`` followed by what crafter's rules say its press needs, as a plan note:
    ``goal: make_wood_pickaxe near table (needs wood>=1; a table nearby)``."""
    if goal_line is None:
        return None
    words = goal_line.removeprefix("goal:").split()
    verb, _, thing = words[0].partition("_") if words else ("", "", "")
    needs: list[str] = []
    if verb == "collect" and "at" in words[:-1]:
        material = words[words.index("at") + 1]
        needs += [
            f"{item}>={amount}" for item, amount in constants.collect.get(material, {}).get("require", {}).items()
        ]
    elif verb == "place" and thing in constants.place:
        needs += [f"{item}>={amount}" for item, amount in constants.place[thing]["uses"].items()]
    elif verb == "make" and thing in constants.make:
        needs += [f"{item}>={amount}" for item, amount in constants.make[thing]["uses"].items()]
        needs += [f"a {util} nearby" for util in constants.make[thing]["nearby"]]
    return f"{goal_line} (needs {'; '.join(needs)})" if needs else goal_line


def placed_by(material: str) -> str | None:
    """The plan goal that puts ``material`` into the world (``place_*``), when crafter has one."""
    return f"goal: place_{material}" if material in constants.place and material not in constants.collect else None


def achievement_hint(name: str) -> str:
    """What an achievement means, as a plan goal (crafter's ``data.yaml``; the few that live in code are named)."""
    verb, _, thing = name.partition("_")
    if verb == "collect":
        return source_of(thing) or f"goal: {name}"
    if verb == "make":
        return f"goal: {name} near {'+'.join(constants.make[thing]['nearby'])}"
    if verb in ("eat", "defeat"):
        return f"goal: {name} at {thing}"
    if name == "wake_up":
        return "goal: sleep until wake_up"
    return f"goal: {name}"


def restore_hint(status: str) -> str | None:
    """How crafter restores a status value, as a plan goal."""
    if status == "drink":
        return source_of("drink")
    if status == "food":
        return "goal: eat_cow at cow"
    if status == "energy":
        return "goal: sleep"
    return None


_HITS = {"cow": 3, "zombie": 5, "skeleton": 3}


def unmet_requirements(action: str, obs: Observation) -> list[Unmet]:
    """What ``action``, pressed in ``obs``, lacked by crafter's rules (empty when the rules were met)."""
    inventory = obs.inventory
    material, thing = obs.facing_cell()
    unmet: list[Unmet] = []

    def need_items(uses: Mapping[str, int], why: str) -> None:
        for item, amount in uses.items():
            have = int(inventory.get(item, 0))
            if have < amount:
                unmet.append(
                    Unmet(
                        "item",
                        f"{why} needs {item}>={amount} (had {have})",
                        recipe(source_of(item)),
                        item=item,
                        need=int(amount),
                        have=have,
                    )
                )

    if action == "do":
        if thing in _HITS:
            return [Unmet("none", f"`do` hits a {thing}; it takes {_HITS[thing]} hits without a sword")]
        if thing == "plant":
            return [Unmet("none", "`do` on a plant eats it only when it is ripe (it ripens after some 300 steps)")]
        info = constants.collect.get(str(material)) if material else None
        if info is None:
            return [Unmet("target", f"`do` facing {material or 'nothing'} does nothing")]
        need_items(info["require"], f"`do` on {material}")
        probability = float(info.get("probability", 1.0))
        if not unmet and probability < 1.0:
            tries = math.ceil(3 / probability)
            unmet.append(
                Unmet("chance", f"`do` on {material} succeeds with probability {probability:g}", f"tries {tries}")
            )
        return unmet
    verb, _, name = action.partition("_")
    if verb == "place" and name in constants.place:
        info = constants.place[name]
        need_items(info["uses"], action)
        if thing is not None:
            unmet.append(Unmet("target", f"{action} needs a free tile in front (a {thing} stood there)"))
        elif material not in info["where"]:
            unmet.append(
                Unmet("target", f"{action} needs {' or '.join(info['where'])} in front (faced {material or 'nothing'})")
            )
        return unmet
    if verb == "make" and name in constants.make:
        info = constants.make[name]
        around = obs.nearby_materials(1)
        for util in info["nearby"]:
            if util not in around:
                unmet.append(
                    Unmet("nearby", f"{action} needs a {util} nearby (within 1 tile)", recipe(source_of(util)))
                )
        need_items(info["uses"], action)
        return unmet
    if action == "sleep":
        if int(inventory.get("energy", 0)) >= ITEM_MAX["energy"]:
            maximum = ITEM_MAX["energy"]
            return [
                Unmet("energy", f"sleep only starts when energy is below its maximum ({maximum})", f"energy<{maximum}")
            ]
        return []
    return [Unmet("none", f"{action} changes nothing here")]
