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

import structlog

__all__ = ["configure_default_logging", "get_logger", "stderr_logger"]


def stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """structlog's logger factory for lines on stderr."""
    # sys.stderr is looked up per line, so a replaced stderr (pytest's capture, a redirect) is honoured
    return structlog.PrintLogger(sys.stderr)


def configure_default_logging() -> None:
    """Console lines on stderr, with the bound context, unless structlog is configured already."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A lazy structlog logger for module ``name`` (the configuration is read when a line is logged)."""
    configure_default_logging()
    return structlog.get_logger(logger_name=name)
