"""The synth_opt error tree.

Every error synth_opt raises on purpose derives from one root, so callers can catch at the level they care
about. Each class carries a stable ``error_code`` (used in CLI output, service responses and events) and an
``exit_code`` for the command line::

    SynthOptimizerError                 synth_opt_error        exit 1
    ├── ConfigError                     config_error           exit 2   (bad TOML, bad key, missing file)
    ├── UsageError                      usage_error            exit 2   (bad command-line use)
    ├── ContainerContractError          container_contract     exit 1   (a container broke the wire contract)
    │   ├── ContainerTransportError     container_transport    exit 1   (nothing usable served, after retries)
    │   ├── ContainerOutageError        container_outage       exit 1   (nothing served within the outage timeout)
    │   └── ContainerCheckError         container_check        exit 1   (the container's start-up check failed)
    ├── ProposerError                   proposer_error         exit 1   (no usable proposal, proposer died)
    │   ├── ProposerReplyError          proposer_reply         exit 1   (served, but unusable: a failed proposal)
    │   └── ProposerUnavailableError    proposer_unavailable   exit 1   (nothing served: an outage)
    ├── CacheMissError                  cache_miss             exit 1   (readonly run asked for an absent entry)
    ├── CacheCorruptError               cache_corrupt          exit 1
    ├── BudgetExceededError             budget_exceeded        exit 1
    ├── RunCancelledError               run_cancelled          exit 130
    ├── EventCompareError               event_compare          exit 1   (two feeds differ)
    ├── InvariantError                  invariant_error        exit 1
    ├── LeaseLostError                  lease_lost             exit 1
    ├── RunStateError                   run_state              exit 2   (run directory in a state that needs --fresh)
    │   └── RunLockedError              run_locked             exit 2   (another live process holds the run directory)
    └── RunFailedError                  run_failed             exit 1   (a bug or an unexpected failure in a run)

Messages name the field, file, URL or key involved and say what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from anyio import get_cancelled_exc_class

from synth_opt.redact import redact_fields, redact_text

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
    "collapse_exception_group",
    "file_failure",
    "unwritable",
]


class SynthOptimizerError(Exception):
    """Root of every error synth_opt raises on purpose."""

    error_code: ClassVar[str] = "synth_opt_error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **detail: Any) -> None:
        message = redact_text(message)  # an error quotes urls, and is printed, logged, stored and served
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = redact_fields(detail)

    def one_line(self) -> str:
        """The single line the CLI prints: ``error[<code>]: <message>``."""
        text = " ".join(self.message.split())
        return f"error[{self.error_code}]: {text}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.error_code, "message": self.message, "detail": self.detail}


class ConfigError(SynthOptimizerError):
    error_code = "config_error"
    exit_code = 2


class UsageError(SynthOptimizerError):
    error_code = "usage_error"
    exit_code = 2


class ContainerContractError(SynthOptimizerError):
    error_code = "container_contract"


class ContainerTransportError(ContainerContractError):
    """A transport failure: the container served nothing usable (refused, reset, timed out, 408, 425, 429, 5xx),
    after the client's retries. ``detail`` carries ``url``, ``route``, ``method`` and ``status`` (None when no HTTP
    reply came back). Not a task outcome: the outage circuit holds the rollout (:mod:`synth_opt.container.circuit`)."""

    error_code = "container_transport"


class ContainerOutageError(ContainerContractError):
    """The container served no rollout within ``[container] outage_timeout_seconds``: the run fails (an outage is
    never a task outcome)."""

    error_code = "container_outage"


class ContainerCheckError(ContainerContractError):
    """The container's start-up check (``POST /health/check``, :mod:`synth_opt.policies.check`) says it cannot do
    its work (a missing tool, a policy endpoint that does not answer or serves another model); the run fails
    before it spends anything. ``detail`` carries ``url`` and the ``checks`` that failed."""

    error_code = "container_check"


class ProposerError(SynthOptimizerError):
    error_code = "proposer_error"


class ProposerReplyError(ProposerError):
    """The proposer served a reply and it is unusable (nothing parseable, cut short by the token limit, a codex
    turn that completed as failed). A proposal outcome, not a crash: the run commits a ``proposal.failed``
    decision. ``raw_reply`` is what was served (for the record, the cache and the error message) and ``usage``
    what the call cost (what the server reported, or the estimate where it reported nothing)."""

    error_code = "proposer_reply"

    def __init__(self, message: str, *, raw_reply: str = "", usage: Any = None, **detail: Any) -> None:
        super().__init__(message, **detail)
        self.raw_reply = raw_reply
        self.usage = usage


class ProposerUnavailableError(ProposerError):
    """Nothing was served: connection refused or reset, 429/5xx after the retries, no message before the timeout.
    An outage, not an outcome: the proposal waits and the run pauses (``proposer.outage_timeout_seconds``)."""

    error_code = "proposer_unavailable"


class CacheMissError(SynthOptimizerError):
    error_code = "cache_miss"


class CacheCorruptError(SynthOptimizerError):
    error_code = "cache_corrupt"


class BudgetExceededError(SynthOptimizerError):
    error_code = "budget_exceeded"


class RunCancelledError(SynthOptimizerError):
    error_code = "run_cancelled"
    exit_code = 130


class EventCompareError(SynthOptimizerError):
    error_code = "event_compare"


class InvariantError(SynthOptimizerError):
    error_code = "invariant_error"


class LeaseLostError(SynthOptimizerError):
    error_code = "lease_lost"


class RunStateError(SynthOptimizerError):
    error_code = "run_state"
    exit_code = 2


class RunLockedError(RunStateError):
    """Another live process holds the run directory's lock (its PID is in the message and ``detail``)."""

    error_code = "run_locked"


class RunFailedError(SynthOptimizerError):
    error_code = "run_failed"


def collapse_exception_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The run boundary: a deliberate synth_opt error or a cancellation passes through as itself; anything else
    (a bug) becomes one RunFailedError that keeps the original as its cause."""
    leaves = list(_leaves(group))
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt | SystemExit):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, SynthOptimizerError):
            return leaf
    cancelled = get_cancelled_exc_class()
    if all(isinstance(leaf, cancelled) for leaf in leaves):
        return leaves[0]
    bug = next(leaf for leaf in leaves if not isinstance(leaf, cancelled))
    error = file_failure(bug) or RunFailedError(f"the run failed unexpectedly: {type(bug).__name__}: {bug}")
    error.__cause__ = bug
    return error


def file_failure(error: BaseException) -> RunFailedError | None:
    """An OS error on a named file (a read-only folder, a folder where a file should be, a full disk) as the
    error a user can act on, naming the file; None for anything else."""
    if not isinstance(error, OSError) or not error.filename:
        return None
    names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
    return RunFailedError(
        f"{names}: {error.strerror or error} ({type(error).__name__}); fix it (its permissions, free space, or "
        "what is in its place) and run the same command again: a run resumes from its last checkpoint",
        path=str(error.filename),
    )


def unwritable(path: object, error: OSError) -> RunFailedError:
    """A run file that could not be written (a full disk, a read-only folder): named, with what to do."""
    return RunFailedError(
        f"could not write {path}: {error.strerror or error}; free space (or fix permissions) and re-run the same "
        "config: it resumes from its last checkpoint",
        path=str(path),
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
