"""Log lines through structlog, for the whole package.

``get_logger(name)`` is ``structlog.get_logger`` with the module's name bound as ``logger_name``. Context comes from
``structlog.contextvars``: the run executing binds ``run_id``, a service worker and an HTTP handler bind the
``request_id`` they serve (``bound_contextvars``), so every line logged beneath them carries those ids.

Until the application configures structlog itself (``gepa run`` does, for its log format and level; a library user
may), lines go to stderr as console text at level info and above: stdout stays for command output (SPEC §2).
Tests read log lines with ``structlog.testing.capture_logs()``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["configure_default_logging", "get_logger", "stderr_logger"]


def stderr_logger(*_args: Any) -> Any:
    """structlog's logger factory for lines on stderr (a ``structlog.PrintLogger``)."""
    import structlog

    # sys.stderr is looked up per line, so a replaced stderr (pytest's capture, a redirect) is honoured
    return structlog.PrintLogger(sys.stderr)


def configure_default_logging() -> None:
    """Console lines on stderr, with the bound context, unless structlog is configured already."""
    import structlog

    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # plain tracebacks: rich's, structlog's default when rich is installed, print every frame's locals
            # (configs with URLs and keys, request headers)
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A lazy structlog logger for module ``name``: structlog is imported, and the default configuration applied,
    when the first line is logged (a module that defines its logger at import time, such as the workspace's writer
    process, does not pay for structlog's import until it has something to say)."""
    return _LazyLogger(name)


class _LazyLogger:
    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import structlog

            configure_default_logging()
            self._logger = structlog.get_logger(logger_name=self._name)
        return getattr(self._logger, attribute)
