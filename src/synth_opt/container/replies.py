"""Validation of container replies into the records of :mod:`synth_opt.container.wire`, and the two kinds of
failure a container call can end in.

Pure functions over parsed JSON: nothing past the container boundary sees raw replies. ``validate_rollout_reply``
is also what the cache uses to re-check a stored reply after binding it to the current rollout id.

The two kinds of failure (defined here, once):

- a **transport failure** (:class:`ContainerTransportError`): nothing usable was served. The connection was
  refused or reset, connecting or reading timed out or the attempt missed ``request_timeout_seconds``, or the reply
  was HTTP 408, 425, 429 or 5xx (:func:`is_transport_status`); reported after the client's own retries. It says
  nothing about the task: a rollout that ends in one is held and tried again (see
  :mod:`synth_opt.container.circuit`), and several of them in a row are an outage, never an outcome;
- a **task failure** (any other :class:`~synth_opt.errors.ContainerContractError`): something was served, and it is
  the answer. A 2xx body that is not JSON or not an object, a body over ``container.max_reply_bytes``, JSON nested
  deeper than :data:`MAX_REPLY_DEPTH`, a wrong or missing ``rollout_id``, a reward the contract rejects (not a
  number, or an integer too large for a float), usage that is not a count, ``status: failed``, and any other 4xx.
  Never retried; a rollout that ends in one is a degraded attempt, counted against
  ``rollout_failure_rate_tolerance``.

No reply, however hostile, raises anything else (``RecursionError``, ``OverflowError``): :func:`decode_reply` and
the validators turn each into a task failure that names the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Final

from synth_opt.container.wire import ProgramInfo, ProgramModule, RolloutReply, TasksetInfo
from synth_opt.errors import ContainerContractError, ContainerTransportError
from synth_opt.texts import without_lone_surrogates
from synth_opt.usage import Usage, usage_problem

__all__ = [
    "FAILURE_STATUSES",
    "MAX_REPLY_DEPTH",
    "MAX_SCORE",
    "PENDING_STATUSES",
    "SUCCESS_STATUSES",
    "TRANSPORT_STATUS_CODES",
    "ContainerTransportError",
    "RolloutPhase",
    "UnusableBody",
    "check_rollout_id",
    "clip",
    "decode_reply",
    "first_number",
    "gepa_contract_version",
    "invalid_reply",
    "is_transport_status",
    "parse_program",
    "parse_taskset",
    "policy_model",
    "rollout_phase",
    "stable_row_id",
    "status_error",
    "validate_rollout_reply",
]

SUCCESS_STATUSES: Final = frozenset({"completed", "complete", "success", "succeeded", "ok", "done"})
FAILURE_STATUSES: Final = frozenset(
    {"failed", "failure", "error", "cancelled", "canceled", "terminated", "expired", "timeout", "timed_out"}
)
PENDING_STATUSES: Final = frozenset(
    {"running", "queued", "pending", "submitted", "accepted", "in_progress", "started", "paused", "created"}
)
_REPLY_HINT: Final = "fix the container so its reply follows the synth-containers contract (SPEC §4)"
MAX_REPLY_DEPTH: Final = 256
MAX_SCORE: Final = 1e100
"""The largest magnitude of a reward or objective score: the run sums a candidate's scores over its rows, and
sums of numbers near the float limit overflow to infinity (a mean of inf, an acceptance of inf against inf)."""
"""The deepest nesting of arrays and objects a reply may have; deeper ones are task failures (a real reply nests a
few levels; a deeper one would overflow the recursion of the JSON encoder that stores it)."""
_USAGE_COUNTS: Final = ("prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens")
TRANSPORT_STATUS_CODES: Final = frozenset({408, 425, 429})
"""Statuses below 500 that say the request was not served (with every 5xx): retried, then a transport failure."""


def is_transport_status(status: int) -> bool:
    """Whether an HTTP status means nothing usable was served (408, 425, 429 and 5xx)."""
    return status >= 500 or status in TRANSPORT_STATUS_CODES


class UnusableBody(ValueError):
    """A served body that cannot be used as JSON; the message names why (the caller adds where)."""


def decode_reply(content: bytes) -> Any:
    """Parse a reply body as JSON, or raise :class:`UnusableBody` naming the problem: not JSON (an integer past
    Python's digit limit included), or nested deeper than :data:`MAX_REPLY_DEPTH`. A lone surrogate in a text
    becomes U+FFFD."""
    try:
        payload = json.loads(content)
    except RecursionError:
        raise UnusableBody(f"a body of JSON nested deeper than {MAX_REPLY_DEPTH} levels") from None
    except json.JSONDecodeError:
        raise UnusableBody("a body that is not JSON") from None
    except ValueError as exc:  # a number past Python's limits, such as an integer of more than 4,300 digits
        raise UnusableBody(f"a body that is not JSON ({clip(str(exc), 160)})") from None
    # Depth n needs n openers: only a body with more of them than the limit is walked.
    if content.count(b"[") + content.count(b"{") > MAX_REPLY_DEPTH and _deeper_than(payload, MAX_REPLY_DEPTH):
        raise UnusableBody(f"a body of JSON nested deeper than {MAX_REPLY_DEPTH} levels")
    return without_lone_surrogates(payload, content)  # (half an emoji would fail every write of the run)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels in ``value`` (an iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class _NotAFloat(ValueError):
    """A JSON number that no float can hold; the message says what it is."""


class RolloutPhase(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    UNKNOWN = "unknown"


def rollout_phase(reply: Mapping[str, Any]) -> RolloutPhase:
    """Classify a rollout reply or state by its ``status`` and ``success_status`` words (case-insensitive).

    A failure word in either field wins (synth-containers reports ``completed``/``failed`` for a rollout that
    ran but failed), then a pending word, then a success word.
    """
    words = {str(reply.get(key) or "").strip().lower() for key in ("status", "success_status")} - {""}
    if words & FAILURE_STATUSES:
        return RolloutPhase.FAILED
    if words & PENDING_STATUSES:
        return RolloutPhase.PENDING
    if words & SUCCESS_STATUSES:
        return RolloutPhase.SUCCEEDED
    return RolloutPhase.UNKNOWN


def validate_rollout_reply(payload: Any, rollout_id: str, *, url: str, route: str) -> RolloutReply:
    """Turn a terminal rollout reply into a :class:`RolloutReply` or raise ``ContainerContractError``."""
    where = f"container at {url} ({route})"
    if not isinstance(payload, dict):
        raise invalid_reply(where, f"expected a JSON object, got {type(payload).__name__}", url, route)
    check_rollout_id(payload, rollout_id, url=url, route=route)
    phase = rollout_phase(payload)
    if phase is not RolloutPhase.SUCCEEDED:
        raise status_error(payload, rollout_id, url=url, route=route)
    reward_info = payload.get("reward_info")
    info = reward_info if isinstance(reward_info, dict) else {}
    try:
        reward = first_number(info, "outcome_reward", "score", prefix="reward_info.")
        if reward is None:
            reward = first_number(payload, "reward")
    except _NotAFloat as exc:
        raise invalid_reply(where, f"rollout {rollout_id}: {exc}", url, route) from None
    if reward is None:
        raise invalid_reply(
            where,
            f"rollout {rollout_id} has no numeric reward "
            "(reward_info.outcome_reward, reward_info.score or a top-level reward)",
            url,
            route,
        )
    return RolloutReply(
        rollout_id=rollout_id,
        status=str(payload.get("status") or payload.get("success_status")),
        reward=reward,
        objectives=_objectives(payload, info, where=where, url=url, route=route),
        usage=Usage.from_reply(_checked_usage(payload.get("usage"), where=where, url=url, route=route)),
        trace=_trace(payload),
        feedback=_feedback(payload, info),
        raw=payload,
    )


def check_rollout_id(reply: Mapping[str, Any], rollout_id: str, *, url: str, route: str, required: bool = True) -> None:
    got = reply.get("rollout_id")
    if got is None and not required:
        return
    if got != rollout_id:
        raise ContainerContractError(
            f"container at {url} ({route}) answered rollout {rollout_id!r} with rollout_id {got!r}; the "
            f"reply must echo the request's rollout_id; {_REPLY_HINT}",
            url=url,
            route=route,
            rollout_id=rollout_id,
            reply_rollout_id=got,
        )


def status_error(reply: Mapping[str, Any], rollout_id: str, *, url: str, route: str) -> ContainerContractError:
    status = reply.get("status")
    success_status = reply.get("success_status")
    detail = reply.get("status_detail") or reply.get("error") or ""
    described = f"status={status!r}, success_status={success_status!r}"
    if detail:
        described += f", detail: {clip(str(detail), 300)}"
    if rollout_phase(reply) is RolloutPhase.FAILED:
        message = f"rollout {rollout_id} failed ({described}); see the container's log for the cause"
    else:
        message = f"rollout {rollout_id} ended with no terminal success status ({described}); {_REPLY_HINT}"
    return ContainerContractError(
        f"container at {url} ({route}): {message}",
        url=url,
        route=route,
        rollout_id=rollout_id,
        status=status,
        success_status=success_status,
    )


def _objectives(
    payload: Mapping[str, Any], info: Mapping[str, Any], *, where: str, url: str, route: str
) -> dict[str, float]:
    objectives: dict[str, float] = {}
    scores = payload.get("objective_scores")
    if isinstance(scores, list):
        for entry in scores:
            if not isinstance(entry, dict) or not isinstance(entry.get("objective"), str):
                raise invalid_reply(where, "objective_scores entries need 'objective' and 'value'", url, route)
            value = _objective_number(entry.get("value"), f"objective {entry['objective']!r}", where, url, route)
            if value is None:
                raise invalid_reply(where, f"objective {entry['objective']!r} has no numeric value", url, route)
            objectives[entry["objective"]] = value
    by_name = info.get("objectives")
    if isinstance(by_name, dict):
        for name, raw in by_name.items():
            value = _objective_number(raw, f"reward_info.objectives[{name!r}]", where, url, route)
            if value is None:
                raise invalid_reply(where, f"reward_info.objectives[{name!r}] is not a number", url, route)
            objectives.setdefault(str(name), value)
    return objectives


def _objective_number(value: Any, name: str, where: str, url: str, route: str) -> float | None:
    try:
        return _number(value, name)
    except _NotAFloat as exc:
        raise invalid_reply(where, str(exc), url, route) from None


def _checked_usage(usage: Any, *, where: str, url: str, route: str) -> Any:
    """``usage`` unchanged when its counts and cost are numbers a ledger can hold (finite, not negative, within
    what one reply may report); else a task failure naming the field."""
    if not isinstance(usage, dict):
        return usage
    problem = usage_problem(usage, _USAGE_COUNTS, ("cost_usd", "cost"))
    if problem is not None:
        raise invalid_reply(where, problem, url, route)
    return usage


def _describe_big(value: int | float) -> str:
    if isinstance(value, int):
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{value:g}"


def _trace(payload: Mapping[str, Any]) -> Any:
    trace = payload.get("trace")
    if trace:
        return trace
    turns = payload.get("turns")
    return turns if turns is not None else trace


def _feedback(payload: Mapping[str, Any], info: Mapping[str, Any]) -> str | None:
    holders: list[Any] = [payload, info, payload.get("actionable_side_info"), payload.get("metadata")]
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        value = holder.get("feedback")
        if value is None or value == "":
            continue
        if isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return None


def invalid_reply(where: str, problem: str, url: str, route: str) -> ContainerContractError:
    return ContainerContractError(f"{where} sent an invalid reply: {problem}; {_REPLY_HINT}", url=url, route=route)


# -------------------------------------------------------------------------------------- program and taskset


def parse_program(payload: Mapping[str, Any], *, where: str) -> ProgramInfo:
    def fail(problem: str) -> ContainerContractError:
        return ContainerContractError(f"{where} sent an invalid program: {problem}; {_REPLY_HINT}")

    raw_modules = payload.get("modules") or []
    if not isinstance(raw_modules, list):
        raise fail("'modules' must be a list")
    modules: list[ProgramModule] = []
    seed_fields: dict[str, str] = {}
    for raw in raw_modules:
        if not isinstance(raw, dict) or not isinstance(raw.get("module_id"), str) or not raw["module_id"]:
            raise fail("every module needs a non-empty string 'module_id'")
        module_id = raw["module_id"]
        if any(module.module_id == module_id for module in modules):
            raise fail(f"module_id {module_id!r} appears twice")
        explicit_field = raw.get("candidate_field")
        for key, kind in (("role", str), ("content", str), ("candidate_field", str), ("mutable", bool)):
            if raw.get(key) is not None and not isinstance(raw[key], kind):
                raise fail(f"module {module_id!r} field {key!r} must be a {kind.__name__}")
        module = ProgramModule(
            module_id=module_id,
            role=raw.get("role") or "",
            content=raw.get("content") or "",
            mutable=bool(raw.get("mutable", False)),
            candidate_field=explicit_field or module_id,
        )
        modules.append(module)
        if module.mutable or explicit_field:
            seed_fields[module.candidate_field] = module.content
    seed = payload.get("seed_candidate")
    if seed:
        if not isinstance(seed, dict) or not all(isinstance(v, str) for v in seed.values()):
            raise fail("'seed_candidate' must map field names to text")
        seed_fields = {str(key): value for key, value in seed.items()}
    targets = _target_fields(payload.get("target_modules"), modules, fail)
    unknown = [target for target in targets if seed_fields and target not in seed_fields]
    if unknown:
        raise fail(f"target modules {unknown} are not fields of the seed candidate {sorted(seed_fields)}")
    return ProgramInfo(
        program_id=str(payload.get("program_id") or ""),
        modules=tuple(modules),
        target_modules=targets,
        seed_candidate=seed_fields,
    )


def _target_fields(
    raw: Any, modules: Sequence[ProgramModule], fail: Callable[[str], ContainerContractError]
) -> tuple[str, ...]:
    """Target candidate fields: ``target_modules`` as names or ``{module_id, candidate_field}`` rows."""
    field_of = {module.module_id: module.candidate_field for module in modules}
    if not raw:
        return tuple(dict.fromkeys(module.candidate_field for module in modules if module.mutable))
    if not isinstance(raw, list):
        raise fail("'target_modules' must be a list")
    fields: list[str] = []
    for entry in raw:
        if isinstance(entry, str):
            fields.append(field_of.get(entry, entry))
        elif isinstance(entry, dict) and (entry.get("candidate_field") or entry.get("module_id")):
            explicit = entry.get("candidate_field")
            module_id = str(entry.get("module_id") or "")
            fields.append(str(explicit) if explicit else field_of.get(module_id, module_id))
        else:
            raise fail("each target module must be a name or an object with module_id/candidate_field")
    return tuple(dict.fromkeys(fields))


def _listed_ids(split: str, listed: list[Any], fail: Callable[[str], ContainerContractError]) -> tuple[str, ...]:
    """A split's ``task_ids``: strings or integers (read as their digits), each once."""
    first: dict[str, int] = {}
    for position, task_id in enumerate(listed):
        if isinstance(task_id, bool) or not isinstance(task_id, str | int):
            shown = json.dumps(task_id)[:60] if _jsonable(task_id) else repr(task_id)[:60]
            raise fail(f"split {split!r}: task_ids[{position}] is {shown}, not a string or an integer")
        key = str(task_id)
        if key in first:
            raise fail(
                f"split {split!r} lists task id {key!r} twice (task_ids[{first[key]}] and [{position}]); each row "
                "needs an id of its own"
            )
        first[key] = position
    return tuple(first)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def parse_taskset(payload: Mapping[str, Any], *, where: str) -> TasksetInfo:
    def fail(problem: str) -> ContainerContractError:
        return ContainerContractError(f"{where} sent an invalid taskset: {problem}; {_REPLY_HINT}")

    splits = payload.get("splits")
    if not isinstance(splits, dict):
        raise fail("'splits' must be an object of split name -> {task_ids} or {count}")
    task_ids: dict[str, tuple[str, ...]] = {}
    counts: dict[str, int] = {}
    for split, entry in splits.items():
        listed: Any = entry.get("task_ids") if isinstance(entry, dict) else entry
        if isinstance(listed, list):
            task_ids[split] = _listed_ids(split, listed, fail)
        count: Any = listed if isinstance(listed, int) else None
        if isinstance(entry, dict):
            count = next((entry[key] for key in ("count", "size") if entry.get(key) is not None), count)
        if count is None and split in task_ids:
            count = len(task_ids[split])
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise fail(f"split {split!r} lists neither task_ids nor a non-negative count")
        counts[split] = count
    labels = payload.get("labels") or []
    metadata = payload.get("metadata") or {}
    if not isinstance(labels, list) or not isinstance(metadata, dict):
        raise fail("'labels' must be a list and 'metadata' an object")
    return TasksetInfo(
        task_ids=task_ids, counts=counts, labels=tuple(str(label) for label in labels), metadata=metadata
    )


# ------------------------------------------------------------------------------------------------- helpers


def gepa_contract_version(metadata: Mapping[str, Any]) -> str | None:
    """``metadata.optimizer_contracts.gepa.version``, else the legacy top-level ``optimizer_contracts``."""
    inner = metadata.get("metadata")
    for holder in (inner if isinstance(inner, dict) else {}, metadata):
        contracts = holder.get("optimizer_contracts")
        if isinstance(contracts, dict) and isinstance(contracts.get("gepa"), dict):
            version = contracts["gepa"].get("version")
            return None if version is None else str(version)
    return None


def policy_model(metadata: Mapping[str, Any] | None) -> str | None:
    """The identity of the model the container's policy uses: ``metadata.policy_model`` of ``GET /metadata`` (else a
    top-level ``policy_model``), a non-empty string, or an object (such as a model server's ``/models`` entry) taken
    as its canonical JSON. None when the container does not say (an offline policy may name itself instead)."""
    if not metadata:
        return None
    inner = metadata.get("metadata")
    for holder in (inner if isinstance(inner, dict) else {}, metadata):
        value = holder.get("policy_model")
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict | list) and value:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return None


def stable_row_id(row: Mapping[str, Any]) -> str | None:
    for key in ("task_id", "example_id", "id"):
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _number(value: Any, name: str = "the value") -> float | None:
    """A finite float, None for anything else; :class:`_NotAFloat` for an integer too large for a float, or a
    number beyond :data:`MAX_SCORE` either way."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        raise _NotAFloat(f"{name} is {_describe_big(value)}, too large for a float") from None
    if math.isfinite(number) and abs(number) > MAX_SCORE:
        raise _NotAFloat(
            f"{name} is {number:g}, beyond {MAX_SCORE:g} either way (the run adds scores up: sums overflow)"
        )
    return number if math.isfinite(number) else None


def first_number(holder: Mapping[str, Any], *keys: str, prefix: str = "") -> float | None:
    """The number at the first of ``keys`` present in ``holder`` (None when it is not one); an integer too large
    for a float raises ``ValueError`` naming ``prefix`` + the key."""
    for key in keys:
        if holder.get(key) is not None:
            return _number(holder[key], prefix + key)
    return None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
