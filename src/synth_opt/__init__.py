"""synth_opt: GEPA prompt optimization as an asyncio actor pipeline against task containers.

::

    from synth_opt import GepaRun
    result = GepaRun.from_toml("gepa.toml").execute()
    result.best_candidate
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from synth_opt.version import __version__

if TYPE_CHECKING:
    from synth_opt.config import GepaConfig, load_config
    from synth_opt.errors import (
        BudgetExceededError,
        CacheCorruptError,
        CacheMissError,
        ConfigError,
        ContainerCheckError,
        ContainerContractError,
        ContainerOutageError,
        ContainerTransportError,
        EventCompareError,
        InvariantError,
        LeaseLostError,
        ProposerError,
        ProposerReplyError,
        ProposerUnavailableError,
        RunCancelledError,
        RunFailedError,
        RunLockedError,
        RunStateError,
        SynthOptimizerError,
        UsageError,
    )
    from synth_opt.result import GepaResult
    from synth_opt.run import GepaCallback, GepaRun
    from synth_opt.service.errors import QueueConflictError, RunRequestNotFoundError
    from synth_opt.service.functions import (
        workspace_cancel_run_request,
        workspace_claim_next_run_request,
        workspace_complete_run_request,
        workspace_heartbeat_run_request,
        workspace_recover,
        workspace_start_run_request,
        workspace_submit_run_request,
    )
    from synth_opt.workspace import repair_workspace, workspace_status

# The public names resolve on first use (PEP 562), so a process that needs one small module (an offline proposer,
# a container's LLM policy) does not pay for importing the whole package.
_EXPORTS = {
    "GepaConfig": "synth_opt.config",
    "load_config": "synth_opt.config",
    "GepaResult": "synth_opt.result",
    "GepaRun": "synth_opt.run",
    "GepaCallback": "synth_opt.run",
    "QueueConflictError": "synth_opt.service.errors",
    "RunRequestNotFoundError": "synth_opt.service.errors",
    "repair_workspace": "synth_opt.workspace",
    "workspace_status": "synth_opt.workspace",
    **{
        name: "synth_opt.errors"
        for name in (
            "BudgetExceededError",
            "CacheCorruptError",
            "CacheMissError",
            "ConfigError",
            "ContainerCheckError",
            "ContainerContractError",
            "ContainerOutageError",
            "ContainerTransportError",
            "EventCompareError",
            "InvariantError",
            "LeaseLostError",
            "ProposerError",
            "ProposerReplyError",
            "ProposerUnavailableError",
            "RunCancelledError",
            "RunFailedError",
            "RunLockedError",
            "RunStateError",
            "SynthOptimizerError",
            "UsageError",
        )
    },
    **{
        name: "synth_opt.service.functions"
        for name in (
            "workspace_cancel_run_request",
            "workspace_claim_next_run_request",
            "workspace_complete_run_request",
            "workspace_heartbeat_run_request",
            "workspace_recover",
            "workspace_start_run_request",
            "workspace_submit_run_request",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synth_opt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "BudgetExceededError",
    "CacheCorruptError",
    "CacheMissError",
    "ConfigError",
    "ContainerCheckError",
    "ContainerContractError",
    "ContainerOutageError",
    "ContainerTransportError",
    "EventCompareError",
    "GepaCallback",
    "GepaConfig",
    "GepaResult",
    "GepaRun",
    "InvariantError",
    "LeaseLostError",
    "ProposerError",
    "ProposerReplyError",
    "ProposerUnavailableError",
    "QueueConflictError",
    "RunCancelledError",
    "RunFailedError",
    "RunLockedError",
    "RunRequestNotFoundError",
    "RunStateError",
    "SynthOptimizerError",
    "UsageError",
    "__version__",
    "load_config",
    "repair_workspace",
    "workspace_cancel_run_request",
    "workspace_claim_next_run_request",
    "workspace_complete_run_request",
    "workspace_heartbeat_run_request",
    "workspace_recover",
    "workspace_start_run_request",
    "workspace_status",
    "workspace_submit_run_request",
]
