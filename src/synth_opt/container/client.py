"""The HTTP client for task containers (SPEC §4).

One class owns the failure policy every route shares: bounded, deterministic retries of transport failures
and retryable statuses, and errors that name the container URL, the route and the status and say what to do.
Replies are validated here into the records of :mod:`synth_opt.container.wire`, so nothing past this boundary
sees raw JSON. ``validate_rollout_reply`` is public because the cache rebinds and revalidates stored replies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx

from synth_opt.container.wire import (
    GEPA_CONTRACT_VERSION,
    ProgramInfo,
    ProgramModule,
    RolloutReply,
    RolloutRequest,
    TasksetInfo,
)
from synth_opt.errors import ContainerContractError
from synth_opt.usage import Usage

__all__ = [
    "FAILURE_STATUSES",
    "PENDING_STATUSES",
    "SUCCESS_STATUSES",
    "ClientStats",
    "ContainerClient",
    "RetryPolicy",
    "RolloutPhase",
    "rollout_phase",
    "validate_rollout_reply",
]

SUCCESS_STATUSES: Final = frozenset({"completed", "complete", "success", "succeeded", "ok", "done"})
FAILURE_STATUSES: Final = frozenset(
    {"failed", "failure", "error", "cancelled", "canceled", "terminated", "expired", "timeout", "timed_out"}
)
PENDING_STATUSES: Final = frozenset(
    {"running", "queued", "pending", "submitted", "accepted", "in_progress", "started", "paused", "created"}
)
RETRYABLE_STATUS_CODES: Final = frozenset({408, 425, 429})
TASKS_CHUNK_SIZE: Final = 500
_TERMINATE_TIMEOUT_SECONDS: Final = 5.0
_TRANSPORT_HINT: Final = (
    "check that the container is running and reachable at that URL (see its log); "
    "for a slow container raise [container] request_timeout_seconds"
)
_REPLY_HINT: Final = "fix the container so its reply follows the synth-containers contract (SPEC §4)"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff without jitter, so runs against a flaky container stay reproducible."""

    max_attempts: int = 4
    base_delay_seconds: float = 0.1
    max_delay_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1)))


@dataclass(slots=True)
class ClientStats:
    """Transport counters for observability; they never feed decisions."""

    requests: int = 0
    retries: int = 0
    polls: int = 0
    terminations: int = 0


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


class _NotFound:
    """Marker for a 404 on a route the caller treats as optional."""


_NOT_FOUND: Final = _NotFound()


class ContainerClient:
    """Async client for one container; safe to share between concurrent tasks."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        request_timeout_seconds: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self.url = _display_url(self._base_url)
        self._retry = retry
        self._sleep = sleep
        self._request_timeout = request_timeout_seconds
        sent_headers = {"accept": "application/json", **dict(headers or {})}
        if bearer_token:
            sent_headers["authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers=sent_headers,
            timeout=httpx.Timeout(request_timeout_seconds),
            transport=transport,
        )
        self.stats = ClientStats()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ContainerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ----------------------------------------------------------------------------------------------- routes

    async def health(self) -> dict[str, Any]:
        return self._expect_object(await self._call("GET", "/health"), "GET", "/health")

    async def metadata(self) -> dict[str, Any] | None:
        """``GET /metadata`` (alias ``/info``); None when the container serves neither (the caller warns)."""
        for route in ("/metadata", "/info"):
            payload = await self._call("GET", route, allow_not_found=True)
            if payload is _NOT_FOUND:
                continue
            metadata = self._expect_object(payload, "GET", route)
            version = _gepa_contract_version(metadata)
            if version is not None and version != GEPA_CONTRACT_VERSION:
                raise ContainerContractError(
                    f"container at {self.url} (GET {route}) speaks GEPA contract {version!r}, but synth_opt "
                    f"needs {GEPA_CONTRACT_VERSION!r}; use a container built for {GEPA_CONTRACT_VERSION!r} "
                    "(a current synth-containers release) or point [container] url at one",
                    url=self.url,
                    route=route,
                    found_version=version,
                    expected_version=GEPA_CONTRACT_VERSION,
                )
            return metadata
        return None

    async def program(self) -> ProgramInfo:
        payload = self._expect_object(await self._call("GET", "/program"), "GET", "/program")
        return _parse_program(payload, where=f"container at {self.url} (GET /program)")

    async def task_info(self) -> str | None:
        """A readable task description for the proposer, or None when the container has no ``/task_info``."""
        payload = await self._call("GET", "/task_info", allow_not_found=True)
        if payload is _NOT_FOUND or payload is None:
            return None
        if isinstance(payload, str):
            return payload
        if isinstance(payload, dict):
            task = payload.get("task")
            for holder in (task, payload):
                if isinstance(holder, dict):
                    description = holder.get("description")
                    if isinstance(description, str) and description.strip():
                        return description
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)

    async def taskset(self) -> TasksetInfo:
        payload = self._expect_object(await self._call("GET", "/taskset"), "GET", "/taskset")
        return _parse_taskset(payload, where=f"container at {self.url} (GET /taskset)")

    async def tasks(self, split: str, task_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Rows for ``task_ids`` of ``split`` in request order; the container must return exactly those."""
        wanted = list(dict.fromkeys(str(task_id) for task_id in task_ids))
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), TASKS_CHUNK_SIZE):
            chunk = wanted[start : start + TASKS_CHUNK_SIZE]
            rows.update(await self._tasks_chunk(split, chunk))
        return [rows[str(task_id)] for task_id in task_ids]

    async def rollout(
        self,
        request: RolloutRequest,
        *,
        poll_interval_seconds: float = 0.25,
        async_timeout_seconds: float = 600.0,
    ) -> RolloutReply:
        """Run one rollout; a non-terminal first reply (async submission) is polled until it ends."""
        route = "/rollout"
        reply = self._expect_object(await self._call("POST", route, body=request.to_json()), "POST", route)
        _check_rollout_id(reply, request.rollout_id, url=self.url, route=route)
        if rollout_phase(reply) is RolloutPhase.PENDING:
            route = f"/rollouts/{quote(request.rollout_id, safe='')}"
            reply = await self._await_rollout(request.rollout_id, poll_interval_seconds, async_timeout_seconds)
        return validate_rollout_reply(reply, request.rollout_id, url=self.url, route=route)

    # --------------------------------------------------------------------------------------------- plumbing

    async def _tasks_chunk(self, split: str, chunk: list[str]) -> dict[str, dict[str, Any]]:
        route = "/taskset/tasks"
        payload = self._expect_object(
            await self._call("POST", route, body={"split": split, "task_ids": chunk}), "POST", route
        )
        raw_rows = payload.get("tasks")
        if not isinstance(raw_rows, list) or not all(isinstance(row, dict) for row in raw_rows):
            raise self._reply_error("POST", route, "'tasks' must be a list of objects")
        got: dict[str, dict[str, Any]] = {}
        for row in raw_rows:
            row_id = _row_id(row)
            if row_id is None:
                raise self._reply_error("POST", route, "a row has none of task_id, example_id, id")
            got[row_id] = row
        missing = [task_id for task_id in chunk if task_id not in got]
        extra = [row_id for row_id in got if row_id not in set(chunk)]
        if missing or extra or len(raw_rows) != len(chunk):
            raise ContainerContractError(
                f"container at {self.url} (POST {route}) returned {len(raw_rows)} rows of split {split!r} "
                f"for {len(chunk)} requested ids; missing {_preview(missing)}, unexpected {_preview(extra)}; "
                "check the [dataset] ids against the container's /taskset, or fix the container",
                url=self.url,
                route=route,
                split=split,
                missing_ids=missing,
                extra_ids=extra,
            )
        return got

    async def _await_rollout(self, rollout_id: str, interval: float, limit_seconds: float) -> dict[str, Any]:
        """Poll ``/rollouts/{id}/state`` until a terminal word, then fetch ``/rollouts/{id}``."""
        quoted = quote(rollout_id, safe="")
        state_route = f"/rollouts/{quoted}/state"
        deadline = anyio.current_time() + limit_seconds
        finished = False
        try:
            with anyio.move_on_after(limit_seconds):
                while anyio.current_time() < deadline:
                    await self._sleep(interval)
                    self.stats.polls += 1
                    state = self._expect_object(await self._call("GET", state_route), "GET", state_route)
                    _check_rollout_id(state, rollout_id, url=self.url, route=state_route, required=False)
                    phase = rollout_phase(state)
                    if phase is RolloutPhase.PENDING:
                        continue
                    if phase is RolloutPhase.SUCCEEDED:
                        finished = True
                        break
                    raise _status_error(state, rollout_id, url=self.url, route=state_route)
        except anyio.get_cancelled_exc_class():
            await self._terminate(rollout_id)
            raise
        if not finished:
            await self._terminate(rollout_id)
            raise ContainerContractError(
                f"container at {self.url} (GET {state_route}): rollout {rollout_id} did not finish within "
                f"{limit_seconds:g} s and was terminated; raise [gepa] rollout_async_timeout_seconds or "
                "check the container's log",
                url=self.url,
                route=state_route,
                rollout_id=rollout_id,
            )
        record_route = f"/rollouts/{quoted}"
        return self._expect_object(await self._call("GET", record_route), "GET", record_route)

    async def _terminate(self, rollout_id: str) -> None:
        """Best effort: ask the container to stop a rollout we no longer wait for."""
        route = f"/rollouts/{quote(rollout_id, safe='')}/terminate"
        self.stats.terminations += 1
        with anyio.move_on_after(min(self._request_timeout, _TERMINATE_TIMEOUT_SECONDS), shield=True):
            try:
                await self._call("POST", route, body={}, max_attempts=1, allow_not_found=True)
            except ContainerContractError:
                pass

    async def _call(
        self,
        method: str,
        route: str,
        *,
        body: Any = None,
        allow_not_found: bool = False,
        max_attempts: int | None = None,
    ) -> Any:
        """Send one request with the retry policy; return the parsed JSON body (or ``_NOT_FOUND``)."""
        attempts = max_attempts or self._retry.max_attempts
        problem = ""
        status: int | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
                await self._sleep(self._retry.delay_before_retry(attempt - 1))
            self.stats.requests += 1
            try:
                response = await self._http.request(method, route, json=body)
            except httpx.UnsupportedProtocol as exc:
                error = self._error(method, route, f"unsupported URL ({exc})", None, "fix [container] url")
                raise error from None
            except httpx.RequestError as exc:
                problem, status = _describe_transport_error(exc), None
                continue
            status = response.status_code
            if status == 404 and allow_not_found:
                return _NOT_FOUND
            if 200 <= status < 300:
                try:
                    return response.json()
                except ValueError:
                    problem = f"HTTP {status} with a body that is not JSON"
                    continue
            problem = f"HTTP {status}{_body_hint(response)}"
            if status in RETRYABLE_STATUS_CODES or status >= 500:
                continue
            raise self._error(method, route, problem, status, _hint_for_status(status))
        what = f"{problem} (after {attempts} attempt{'s' if attempts != 1 else ''})"
        hint = _hint_for_status(status) if status is not None else _TRANSPORT_HINT
        raise self._error(method, route, what, status, hint)

    def _error(self, method: str, route: str, problem: str, status: int | None, hint: str) -> ContainerContractError:
        return ContainerContractError(
            f"container at {self.url} failed {method} {route}: {problem}; {hint}",
            url=self.url,
            route=route,
            method=method,
            status=status,
        )

    def _reply_error(self, method: str, route: str, problem: str) -> ContainerContractError:
        return ContainerContractError(
            f"container at {self.url} ({method} {route}) sent an invalid reply: {problem}; {_REPLY_HINT}",
            url=self.url,
            route=route,
        )

    def _expect_object(self, payload: Any, method: str, route: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise self._reply_error(method, route, f"expected a JSON object, got {type(payload).__name__}")
        return payload


# ------------------------------------------------------------------------------------------- rollout replies


def validate_rollout_reply(payload: Any, rollout_id: str, *, url: str, route: str) -> RolloutReply:
    """Turn a terminal rollout reply into a :class:`RolloutReply` or raise ``ContainerContractError``."""
    where = f"container at {url} ({route})"
    if not isinstance(payload, dict):
        raise _invalid(where, f"expected a JSON object, got {type(payload).__name__}", url, route)
    _check_rollout_id(payload, rollout_id, url=url, route=route)
    phase = rollout_phase(payload)
    if phase is not RolloutPhase.SUCCEEDED:
        raise _status_error(payload, rollout_id, url=url, route=route)
    reward_info = payload.get("reward_info")
    info = reward_info if isinstance(reward_info, dict) else {}
    reward = _first_number(info, "outcome_reward", "score")
    if reward is None:
        reward = _first_number(payload, "reward")
    if reward is None:
        raise _invalid(
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
        usage=Usage.from_reply(payload.get("usage")),
        trace=_trace(payload),
        feedback=_feedback(payload, info),
        raw=payload,
    )


def _check_rollout_id(
    reply: Mapping[str, Any], rollout_id: str, *, url: str, route: str, required: bool = True
) -> None:
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


def _status_error(reply: Mapping[str, Any], rollout_id: str, *, url: str, route: str) -> ContainerContractError:
    status = reply.get("status")
    success_status = reply.get("success_status")
    detail = reply.get("status_detail") or reply.get("error") or ""
    described = f"status={status!r}, success_status={success_status!r}"
    if detail:
        described += f", detail: {_clip(str(detail), 300)}"
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
                raise _invalid(where, "objective_scores entries need 'objective' and 'value'", url, route)
            value = _number(entry.get("value"))
            if value is None:
                raise _invalid(where, f"objective {entry['objective']!r} has no numeric value", url, route)
            objectives[entry["objective"]] = value
    by_name = info.get("objectives")
    if isinstance(by_name, dict):
        for name, raw in by_name.items():
            value = _number(raw)
            if value is None:
                raise _invalid(where, f"reward_info.objectives[{name!r}] is not a number", url, route)
            objectives.setdefault(str(name), value)
    return objectives


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


def _invalid(where: str, problem: str, url: str, route: str) -> ContainerContractError:
    return ContainerContractError(f"{where} sent an invalid reply: {problem}; {_REPLY_HINT}", url=url, route=route)


# -------------------------------------------------------------------------------------- program and taskset


def _parse_program(payload: Mapping[str, Any], *, where: str) -> ProgramInfo:
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


def _parse_taskset(payload: Mapping[str, Any], *, where: str) -> TasksetInfo:
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
            task_ids[split] = tuple(str(task_id) for task_id in listed)
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


def _gepa_contract_version(metadata: Mapping[str, Any]) -> str | None:
    """``metadata.optimizer_contracts.gepa.version``, else the legacy top-level ``optimizer_contracts``."""
    inner = metadata.get("metadata")
    for holder in (inner if isinstance(inner, dict) else {}, metadata):
        contracts = holder.get("optimizer_contracts")
        if isinstance(contracts, dict) and isinstance(contracts.get("gepa"), dict):
            version = contracts["gepa"].get("version")
            return None if version is None else str(version)
    return None


def _row_id(row: Mapping[str, Any]) -> str | None:
    for key in ("task_id", "example_id", "id"):
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _first_number(holder: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        if holder.get(key) is not None:
            return _number(holder[key])
    return None


def _display_url(base_url: str) -> str:
    """The URL as shown in messages: no user info, query or fragment (they may carry secrets)."""
    try:
        url = httpx.URL(base_url)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid container url>"


def _describe_transport_error(exc: httpx.RequestError) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name} ({_clip(text, 200)})" if text else name


def _body_hint(response: httpx.Response) -> str:
    text = response.text.strip()
    return f" ({_clip(' '.join(text.split()), 200)})" if text else ""


def _hint_for_status(status: int) -> str:
    if status in (401, 403):
        return "check [container] headers and auth_bearer_env"
    if status == 404:
        return "the container does not serve this route; check [container] url and the container's routes"
    if status == 429:
        return "the container is rate limiting; lower [gepa.pipeline.workers] rollout or retry later"
    if status >= 500 or status in RETRYABLE_STATUS_CODES:
        return _TRANSPORT_HINT
    return "the container rejected the request; check that it speaks the synth-containers contract (SPEC §4)"


def _preview(ids: Sequence[str], limit: int = 10) -> str:
    if not ids:
        return "none"
    shown = ", ".join(repr(item) for item in ids[:limit])
    return f"[{shown}{', ...' if len(ids) > limit else ''}] ({len(ids)})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
