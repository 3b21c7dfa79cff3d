"""The cache at the two outside boundaries: the container and the proposer.

Each wrapper answers from the cache when it can and calls the live object otherwise. In ``readonly`` mode the live
object is never created: the container is not launched and the proposer process is not started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from synth_opt.cache.store import CacheStore
from synth_opt.container.client import ContainerClient
from synth_opt.container.kept import STORED_CHARS, kept_reply
from synth_opt.container.replicas import ReplicaSet
from synth_opt.container.replies import validate_rollout_reply
from synth_opt.container.wire import ProgramInfo, ProgramModule, RolloutReply, RolloutRequest, TasksetInfo
from synth_opt.errors import (
    CacheCorruptError,
    CacheMissError,
    ContainerContractError,
    ContainerOutageError,
    ContainerTransportError,
    ProposerReplyError,
)
from synth_opt.proposers.backends import proposer_backend
from synth_opt.proposers.base import Proposer, ProposerResult
from synth_opt.proposers.reflection import ReflectionRequest
from synth_opt.usage import Usage

__all__ = ["CachedContainer", "CachedProposer"]


class CachedContainer:
    """The container routes a run uses, through the cache. ``live`` is None in readonly mode."""

    def __init__(
        self,
        store: CacheStore,
        live: ContainerClient | ReplicaSet | None,
        *,
        url: str,
        kept_chars: int = STORED_CHARS,
    ) -> None:
        self.store = store
        self.live = live
        self.url = url
        self.kept_chars = kept_chars  # what is kept of a long feedback or trace (synth_opt.container.kept)

    def _client(self) -> ContainerClient | ReplicaSet:
        if self.live is None:  # readonly: the store raised CacheMissError before we got here
            raise AssertionError("a readonly run reached the live container")
        return self.live

    async def _through(self, boundary: str, request: dict[str, Any], call: Callable[[], Awaitable[Any]]) -> Any:
        cached = self.store.get(boundary, request)
        if cached is not None:
            return cached["value"]
        value = await call()
        self.store.put(boundary, request, {"value": value})
        return value

    async def _asked_live(
        self, boundary: str, request: dict[str, Any], call: Callable[[], Awaitable[Any]], *, update: bool
    ) -> Any:
        """Asked of the live container whenever there is one (what it says now is what counts); the cache keeps
        its answer for readonly runs: written on a miss, and replaced when it changed if ``update``."""
        cached = self.store.get(boundary, request)
        if self.live is None:  # readonly: a miss raised CacheMissError
            return None if cached is None else cached["value"]
        value = await call()
        if cached is None or (update and cached.get("value") != value):
            self.store.put(boundary, request, {"value": value})
        return value

    async def health(self) -> dict[str, Any]:
        value: dict[str, Any] = await self._asked_live(
            "container.metadata", {"route": "GET /health"}, lambda: self._client().health(), update=False
        )
        return value

    async def metadata(self) -> dict[str, Any] | None:
        """Always the live container's answer in a live run: it names the policy's model, which chooses the
        cache namespace (:func:`synth_opt.run.container.open_container`); a readonly run reads the last one."""
        value: dict[str, Any] | None = await self._asked_live(
            "container.metadata", {"route": "GET /metadata"}, lambda: self._client().metadata(), update=True
        )
        return value

    async def check(self, policy: Mapping[str, Any]) -> dict[str, Any] | None:
        """The container's start-up check (``POST /health/check``): asked of the live container in a live run, as
        :meth:`metadata` is (it may name the policy's model); a readonly run reads the last answer, or None when
        the cache has none (a cache filled before the check existed still replays)."""
        request = {"route": "POST /health/check"}
        if self.live is None:
            try:
                cached = self.store.get("container.metadata", request)
            except CacheMissError:
                return None
            return None if cached is None else cached["value"]
        live = self.live
        value: dict[str, Any] | None = await self._asked_live(
            "container.metadata", request, lambda: live.check(policy), update=True
        )
        return value

    async def task_info(self) -> str | None:
        value: str | None = await self._through(
            "container.metadata", {"route": "GET /task_info"}, lambda: self._client().task_info()
        )
        return value

    async def taskset(self) -> TasksetInfo:
        async def live() -> dict[str, Any]:
            info = await self._client().taskset()
            return {
                "task_ids": {k: list(v) for k, v in info.task_ids.items()},
                "counts": info.counts,
                "labels": list(info.labels),
                "metadata": info.metadata,
            }

        data = await self._through("container.metadata", {"route": "GET /taskset"}, live)
        try:
            return TasksetInfo(
                task_ids={k: tuple(v) for k, v in data["task_ids"].items()},
                counts=dict(data["counts"]),
                labels=tuple(data["labels"]),
                metadata=dict(data["metadata"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise _corrupt(self.store, "container.metadata", error) from None

    async def program(self) -> ProgramInfo:
        async def live() -> dict[str, Any]:
            info = await self._client().program()
            return {
                "program_id": info.program_id,
                "modules": [
                    {
                        "module_id": m.module_id,
                        "role": m.role,
                        "content": m.content,
                        "mutable": m.mutable,
                        "candidate_field": m.candidate_field,
                    }
                    for m in info.modules
                ],
                "target_modules": list(info.target_modules),
                "seed_candidate": info.seed_candidate,
            }

        data = await self._through("container.program", {"route": "GET /program"}, live)
        try:
            return ProgramInfo(
                program_id=data["program_id"],
                modules=tuple(ProgramModule(**m) for m in data["modules"]),
                target_modules=tuple(data["target_modules"]),
                seed_candidate=dict(data["seed_candidate"]),
            )
        except (KeyError, TypeError) as error:
            raise _corrupt(self.store, "container.program", error) from None

    async def tasks(self, split: str, task_ids: Sequence[str]) -> list[dict[str, Any]]:
        request = {"route": "POST /taskset/tasks", "split": split, "task_ids": list(task_ids)}
        rows: list[dict[str, Any]] = await self._through(
            "container.dataset_rows", request, lambda: self._client().tasks(split, task_ids)
        )
        return rows

    async def rollout(self, request: RolloutRequest, **options: Any) -> RolloutReply:
        """A cached reply is rebound to the current rollout id, then validated like a live one. A task failure
        (something was served, and it is unusable) is an answer too: it is cached and raised again on replay, so a
        replay or a resume decides it the same way. A transport failure or an outage served nothing: never
        cached. A reply with a long feedback or trace is cached as the run keeps it (``kept_chars`` of each, with
        what was cut: :mod:`synth_opt.container.kept`); an entry kept shorter than this run keeps is asked of the
        live container again when there is one."""
        key_request = {"route": "POST /rollout", **request.to_json()}
        key_request.pop("submission_mode", None)
        cached = self.store.get("container.rollout", key_request)
        if cached is not None and (
            self.live is None or int(cached.get("kept_chars") or self.kept_chars) >= self.kept_chars
        ):
            failure = cached.get("task_failure")
            if isinstance(failure, dict):
                raise ContainerContractError(str(failure.get("message")), **dict(failure.get("detail") or {}))
            payload = dict(cached["value"])
            payload["rollout_id"] = request.rollout_id
            reply = validate_rollout_reply(payload, request.rollout_id, url=self.url, route="/rollout (cached)")
            if isinstance(cached.get("cut"), dict):
                digest = cached.get("trace_digest")
                reply = replace(reply, cut=dict(cached["cut"]), whole_trace_digest=str(digest) if digest else None)
            return reply
        try:
            reply = await self._client().rollout(request, **options)
        except (ContainerTransportError, ContainerOutageError):
            raise
        except ContainerContractError as failure:
            task_failure = {"message": failure.message, "detail": failure.detail}
            self.store.put("container.rollout", key_request, {"task_failure": task_failure})
            raise
        kept = kept_reply(reply, self.kept_chars)
        entry: dict[str, Any] = {"value": kept.raw}
        if kept.cut:
            entry |= {"cut": kept.cut, "trace_digest": kept.whole_trace_digest, "kept_chars": self.kept_chars}
        self.store.put("container.rollout", key_request, entry)
        return kept


class CachedProposer:
    """A proposer through the cache; the live proposer is built on the first miss only. Its boundary is the
    registered backend's (:class:`~synth_opt.proposers.backends.ProposerBackend`): ``proposer.codex`` for
    ``codex_app_server``, the name the usage ledger gives its calls too."""

    def __init__(self, store: CacheStore, backend: str, settings: dict[str, Any], build: Callable[[], Proposer]):
        self.store = store
        self.backend = backend
        self.model = settings.get("model")
        self._settings = settings
        self._build = build
        self._live: Proposer | None = None
        self.boundary = proposer_backend(backend).boundary

    async def propose(self, request: ReflectionRequest) -> ProposerResult:
        """A served reply is cached, an unusable one too (raised again on replay, with its raw reply and usage,
        so a replay or a resume decides the failed proposal the same way); an outage served nothing: never
        cached."""
        key_request = {"backend": self.backend, "settings": self._settings, "request": request.to_json()}
        cached = self.store.get(self.boundary, key_request)
        if cached is not None:
            try:
                failure = cached.get("failure")
                if failure is not None:
                    raise ProposerReplyError(
                        str(failure["message"]),
                        raw_reply=str(failure["raw_reply"]),
                        usage=Usage.from_dict(failure["usage"]),
                    )
                return ProposerResult(
                    texts=tuple(cached["texts"]),
                    usage=Usage.from_dict(cached["usage"]),
                    raw_text=cached.get("raw_text", ""),
                )
            except (KeyError, TypeError) as error:
                raise _corrupt(self.store, self.boundary, error) from None
        if self._live is None:
            self._live = self._build()
        try:
            result = await self._live.propose(request)
        except ProposerReplyError as failure:
            usage = failure.usage if isinstance(failure.usage, Usage) else Usage()
            entry = {"message": failure.message, "raw_reply": failure.raw_reply, "usage": usage.to_dict()}
            self.store.put(self.boundary, key_request, {"failure": entry})
            raise
        self.store.put(
            self.boundary,
            key_request,
            {"texts": list(result.texts), "usage": result.usage.to_dict(), "raw_text": result.raw_text},
        )
        return result

    async def aclose(self) -> None:
        if self._live is not None:
            await self._live.aclose()


def _corrupt(store: CacheStore, boundary: str, error: Exception) -> CacheCorruptError:
    return CacheCorruptError(
        f"cache file {store.path}: a {boundary} entry has the wrong shape ({error}); delete the file and re-run "
        "with cache.mode = 'readwrite'",
        path=str(store.path),
    )
