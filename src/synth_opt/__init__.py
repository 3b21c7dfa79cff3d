"""synth_opt: GEPA prompt optimization as an asyncio actor pipeline against task containers.

::

    from synth_opt import GepaRun
    result = GepaRun.from_toml("gepa.toml").execute()
    result.best_candidate
"""

from synth_opt.config import GepaConfig, load_config
from synth_opt.errors import (
    BudgetExceededError,
    CacheCorruptError,
    CacheMissError,
    ConfigError,
    ContainerContractError,
    EventCompareError,
    InvariantError,
    LeaseLostError,
    ProposerError,
    RunCancelledError,
    RunFailedError,
    RunStateError,
    SynthOptimizerError,
    UsageError,
)
from synth_opt.result import GepaResult
from synth_opt.run import GepaRun
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

__version__ = "0.1.0"

__all__ = [
    "BudgetExceededError",
    "CacheCorruptError",
    "CacheMissError",
    "ConfigError",
    "ContainerContractError",
    "EventCompareError",
    "GepaConfig",
    "GepaResult",
    "GepaRun",
    "InvariantError",
    "LeaseLostError",
    "ProposerError",
    "QueueConflictError",
    "RunCancelledError",
    "RunFailedError",
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
