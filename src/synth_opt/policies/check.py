"""A task container's start-up check: ``POST /health/check``, asked once before a run spends anything.

``GET /health`` says only that the process answers. A container that cannot do its work (a missing tool, an LLM
policy whose model server is down or serves another model) would still answer it, and a run would spend its whole
budget on rollouts that all fail the same way. So before the seed's first rollout a live run sends
``POST /health/check`` with ``{"policy": <the run's [policy] table, as every rollout gets it>}``; the container
runs one known-good check of its own and, for an LLM policy, asks the model server for its model. Its reply::

    {"status": "ok" | "failed",
     "checks": [{"name": "...", "ok": true | false, "detail": "..."}],
     "policy_model": {...} | "name" | null}

``status`` is ``failed`` when any check failed; the run then fails at start-up with the failed checks' details.
``policy_model`` names the model the policy uses (for an LLM policy, the model server's ``GET /models`` entry
without its volatile fields, :func:`model_identity`); the optimizer puts it in the cache namespace. The route is
optional: a container that answers 404 is not checked.

This module is the container's side: :func:`container_check` runs a cookbook's checks (its known-good check, the
policy type, and :func:`llm_policy_check` for an ``llm`` policy) and builds the reply (:func:`check_reply`). The
optimizer's side is :meth:`synth_opt.container.client.ContainerClient.check`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from synth_opt.policies.chat import ChatEndpoint

__all__ = [
    "CHECK_ROUTE",
    "VOLATILE_MODEL_FIELDS",
    "Check",
    "check_reply",
    "container_check",
    "llm_policy_check",
    "model_identity",
    "run_check",
]

CHECK_ROUTE = "/health/check"
VOLATILE_MODEL_FIELDS = frozenset({"created"})  # llama.cpp's server sets it to the time of the request


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: its name, whether it passed, and what a user should read."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


async def run_check(name: str, probe: Callable[[], Awaitable[str]]) -> Check:
    """``probe`` as a check: passed with its return value as the detail, failed with the message of any
    exception it raises (a check that cannot run is a failed check, not a crash of the route)."""
    try:
        return Check(name, True, await probe())
    except Exception as exc:  # the check's failure is its outcome
        return Check(name, False, str(exc) or type(exc).__name__)


def model_identity(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A model server's ``GET /models`` entry without the fields that change from request to request."""
    return {key: value for key, value in entry.items() if key not in VOLATILE_MODEL_FIELDS}


async def llm_policy_check(
    policy: Mapping[str, Any], *, default_max_tokens: int, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[Check, dict[str, Any] | None]:
    """The check of an ``llm`` policy table: its key variable is set and its endpoint lists its model. Returns
    the check and, when it passed, the model's identity (:func:`model_identity`)."""
    identity: dict[str, Any] | None = None

    async def probe() -> str:
        nonlocal identity
        endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=default_max_tokens)
        entry = await endpoint.served_model(transport=transport)
        identity = model_identity(entry)
        return f"{endpoint.base_url} serves model {endpoint.model!r}"

    return await run_check("llm_policy", probe), identity


def check_reply(checks: Iterable[Check], *, policy_model: Any = None) -> dict[str, Any]:
    """The body of a ``POST /health/check`` reply for ``checks``."""
    listed = list(checks)
    return {
        "status": "ok" if all(check.ok for check in listed) else "failed",
        "checks": [check.to_json() for check in listed],
        "policy_model": policy_model,
    }


async def container_check(
    policy: Any,
    *,
    known_good: tuple[str, Callable[[], Awaitable[str]]],
    policy_types: Sequence[str],
    llm_max_tokens: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """A cookbook container's whole start-up check for the run's ``policy`` table: its ``known_good`` check (a
    name and a probe that does real work the container's rollouts need), then that ``policy.type`` is one of
    ``policy_types`` (the first is the default), then, for ``llm``, :func:`llm_policy_check`."""
    name, probe = known_good
    checks = [await run_check(name, probe)]
    table: Mapping[str, Any] = policy if isinstance(policy, Mapping) else {}
    policy_type = str(table.get("type") or policy_types[0])
    if not isinstance(policy, Mapping | None):
        checks.append(Check("policy", False, "policy must be an object (the run's [policy] table)"))
    elif policy_type not in policy_types:
        shown = " or ".join(policy_types)
        checks.append(Check("policy", False, f"policy.type {policy_type!r} is unknown; this container runs {shown}"))
    identity: dict[str, Any] | None = None
    if policy_type == "llm" and isinstance(policy, Mapping):
        check, identity = await llm_policy_check(policy, default_max_tokens=llm_max_tokens, transport=transport)
        checks.append(check)
    return check_reply(checks, policy_model=identity)
