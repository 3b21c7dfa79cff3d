"""Errors the run queue and the service add to the tree of :mod:`synth_opt.errors`::

    SynthOptimizerError
    ├── ConfigError
    │   └── ConfinementError        config_not_allowed      exit 2   (HTTP 400: a path outside the service's roots,
    │                                                                 or a command the service does not allow)
    ├── QueueConflictError          queue_conflict          exit 1   (HTTP 409: live run id, wrong request state)
    ├── QueueUnavailableError       queue_unavailable       exit 1   (HTTP 503: the queue's database server is
    │                                                                 unreachable, and stayed so while reconnecting)
    ├── RunRequestNotFoundError     run_request_not_found   exit 2   (HTTP 404)
    └── ServiceAuthError            unauthorized            exit 2   (HTTP 401: missing or wrong bearer token)

``LeaseLostError`` (a fenced write whose lease is gone) stays in :mod:`synth_opt.errors`; the service maps it to 409.
"""

from __future__ import annotations

from synth_opt.errors import ConfigError, SynthOptimizerError

__all__ = [
    "ConfinementError",
    "QueueConflictError",
    "QueueUnavailableError",
    "RunRequestNotFoundError",
    "ServiceAuthError",
]


class ConfinementError(ConfigError):
    """A submitted config the service may not run as it is; ``detail.field`` names the (first) key."""

    error_code = "config_not_allowed"


class QueueConflictError(SynthOptimizerError):
    error_code = "queue_conflict"


class QueueUnavailableError(SynthOptimizerError):
    error_code = "queue_unavailable"


class RunRequestNotFoundError(SynthOptimizerError):
    error_code = "run_request_not_found"
    exit_code = 2


class ServiceAuthError(SynthOptimizerError):
    error_code = "unauthorized"
    exit_code = 2
