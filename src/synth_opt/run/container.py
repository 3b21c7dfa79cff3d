"""The run's container: replayed from the cache, launched from ``[container].command``, or reached at
``[container].url``; every route goes through the cache.

Before anything is spent, a live run asks the container's start-up check (``POST /health/check`` with the run's
``[policy]`` table, :mod:`synth_opt.policies.check`; a container without the route is not checked): a failed check
fails the run at once with what the container said (:class:`~synth_opt.errors.ContainerCheckError`).

The cache namespace names the model the container's policy uses when the container reports it (``policy_model`` in
the check's reply, else ``metadata.policy_model`` of ``GET /metadata``,
:func:`~synth_opt.container.replies.policy_model`): the config's
namespace, then ``+model-`` and a digest of that identity. A config pointed at another server that serves another
model so gets none of the first model's cached answers (URLs are not in cache keys: ports change between runs).
``GET /health``, ``GET /metadata`` and the check themselves stay under the config's namespace, so a readonly run,
which contacts nothing, reads the model there and replays under the namespace of the last live run."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from synth_opt.cache import CachedContainer, CacheStore
from synth_opt.config import GepaConfig
from synth_opt.container.client import ContainerClient
from synth_opt.container.launch import launched_container
from synth_opt.container.replicas import ReplicaSet
from synth_opt.container.replies import policy_model
from synth_opt.errors import ConfigError, ContainerCheckError
from synth_opt.events import EventBus
from synth_opt.events.types import (
    CacheNamespace,
    ContainerChecked,
    ContainerLaunched,
    ContainerOutage,
    ContainerReplica,
    ContainerWarning,
    RunState,
)
from synth_opt.run.lifecycle import emit_run_state

__all__ = ["bearer_token", "container_url", "model_namespace", "open_container", "outage_events", "with_python"]

CONTROL_REQUESTS = 4  # requests beside the rollout workers' (health, taskset, status polls)


def with_python(command: list[str]) -> list[str]:
    """``{python}`` in a command is this interpreter, so cookbook programs run in synth_opt's own environment."""
    return [sys.executable if part == "{python}" else part for part in command]


async def open_container(
    stack: AsyncExitStack,
    config: GepaConfig,
    store: CacheStore,
    bus: EventBus,
    *,
    transport: httpx.AsyncBaseTransport | None,
    run_dir: Path,
) -> CachedContainer:
    """The container client for the run, healthy; what it launches or opens is closed with ``stack``."""
    kept = config.kept_reply_chars()  # of a long feedback or trace
    if store.mode == "readonly":
        url = config.container.url or "readonly-cache://container"
        client = CachedContainer(store, None, url=url, kept_chars=kept)
        emit_run_state(bus, RunState("replaying_from_cache", cache_path=str(store.path)))
    elif config.container.urls is not None:
        replicas = await stack.enter_async_context(replica_set(config, bus, transport=transport))
        url = replicas.url
        client = CachedContainer(store, replicas, url=url, kept_chars=kept)
        emit_run_state(bus, RunState("connecting", container_url=url))
        await replicas.health()  # every replica: those down are taken out, and the run goes on with the others
        await replicas.check_identical()
    else:
        url = await stack.enter_async_context(container_url(config, bus, transport=transport, run_dir=run_dir))
        live = await stack.enter_async_context(
            live_client(config, url, transport=transport, outage=config.container.outage_timeout_seconds, bus=bus)
        )
        client = CachedContainer(store, live, url=url, kept_chars=kept)
        emit_run_state(bus, RunState("connecting", container_url=url))
    await client.health()
    metadata = await client.metadata()
    if metadata is None:
        bus.emit(
            ContainerWarning(),
            f"{url} has no /metadata route; using it as is without a contract check",
            lane="rollout",
        )
    checked = await client.check(config.policy.model_dump(exclude_none=True))
    if checked is not None:
        report_check(checked, url, bus)
    model = policy_model(checked) or policy_model(metadata)
    if model is not None and store.enabled:
        store.namespace = model_namespace(store.namespace, model)
        bus.emit(
            CacheNamespace(store.namespace, model),
            f"cache namespace {store.namespace} (the container's policy uses model {model})",
            lane="cache",
        )
    return client


def live_client(
    config: GepaConfig, url: str, *, transport: httpx.AsyncBaseTransport | None, outage: float | None, bus: EventBus
) -> ContainerClient:
    """A client of the container at ``url`` with the config's settings; through an outage circuit when
    ``outage`` is set (a replica's client has none: its set has one)."""
    return ContainerClient(
        url,
        headers=config.container.headers,
        bearer_token=bearer_token(config),
        request_timeout_seconds=config.container.request_timeout_seconds,
        transport=transport,
        concurrency=config.gepa.pipeline.workers.rollout + CONTROL_REQUESTS,
        outage_timeout_seconds=outage,
        outage_events=outage_events(bus),
        max_reply_bytes=config.container.max_reply_bytes,
    )


def replica_set(config: GepaConfig, bus: EventBus, *, transport: httpx.AsyncBaseTransport | None) -> ReplicaSet:
    """The replicas of ``[container] urls`` as one container (:mod:`synth_opt.container.replicas`)."""
    urls = config.container.urls or []

    def replica_event(url: str, state: str, reason: str) -> None:
        verb = "taken out" if state == "out" else "back in"
        bus.emit(ContainerReplica(url, state, reason), f"container replica {url} {verb}: {reason}", lane="rollout")

    return ReplicaSet(
        [live_client(config, url, transport=transport, outage=None, bus=bus) for url in urls],
        outage_timeout_seconds=config.container.outage_timeout_seconds,
        request_timeout_seconds=config.container.request_timeout_seconds,
        outage_events=outage_events(bus),
        replica_events=replica_event,
    )


def report_check(reply: dict[str, Any], url: str, bus: EventBus) -> None:
    """Emit the container's start-up check as a ``container.checked`` event; raise
    :class:`~synth_opt.errors.ContainerCheckError` quoting the failed checks when it failed."""
    checks = [check for check in reply.get("checks") or [] if isinstance(check, dict)]
    failed = [check for check in checks if not check.get("ok")]
    status = str(reply.get("status"))
    bus.emit(
        ContainerChecked(status, tuple(checks)),
        f"container start-up check: {status} ({len(checks) - len(failed)} of {len(checks)} checks passed)",
        lane="rollout",
    )
    if status == "ok":
        return
    details = "; ".join(f"{check.get('name', 'check')}: {check.get('detail', 'failed')}" for check in failed)
    raise ContainerCheckError(
        f"container at {url} failed its start-up check (POST /health/check): {details or 'no detail given'}; fix "
        "what it names (the container's environment or the [policy] table) and run again; nothing was spent",
        url=url,
        checks=failed,
    )


def model_namespace(namespace: str, model: str) -> str:
    """The cache namespace of ``namespace`` for a container whose policy uses ``model``."""
    return f"{namespace}+model-{hashlib.sha256(model.encode()).hexdigest()[:16]}"


@asynccontextmanager
async def container_url(
    config: GepaConfig, bus: EventBus, *, transport: httpx.AsyncBaseTransport | None, run_dir: Path
) -> AsyncIterator[str]:
    """The container's url: a launched container's while the context is open, or ``[container].url``."""
    section = config.container
    command = section.launch_command()
    if command and transport is None:
        emit_run_state(bus, RunState("launching_container", command=tuple(command)))
        cwd = section.cwd or (config.source_path.parent if section.task is not None else None)
        async with launched_container(
            with_python(command),
            cwd=cwd,
            env=section.env,
            startup_timeout_seconds=section.startup_timeout_seconds,
            url=section.url,
            log_path=run_dir / "container.log",
        ) as launched:
            bus.emit(
                ContainerLaunched(launched.url, launched.pid),
                f"container started at {launched.url} (pid {launched.pid})",
                lane="rollout",
            )
            yield launched.url
    else:
        if section.url is None:
            raise ConfigError(f"{config.source_path}: container.url: a container transport needs a url")
        yield section.url


def outage_events(bus: EventBus) -> Callable[[str, str, dict[str, Any]], None]:
    """The outage circuit's events, as ``container.outage`` transport events on the rollout lane."""

    def emit(state: str, message: str, fields: dict[str, Any]) -> None:
        bus.emit(ContainerOutage.from_fields(fields), message, lane="rollout")

    return emit


def bearer_token(config: GepaConfig) -> str | None:
    name = config.container.auth_bearer_env
    if name is None:
        return None
    token = os.environ.get(name)
    if not token:
        raise ConfigError(
            f"{config.source_path}: container.auth_bearer_env: environment variable {name} is not set; "
            "export it or remove auth_bearer_env"
        )
    return token
