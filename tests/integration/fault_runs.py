"""The small whole-run config the fault-container tests share: a launched ``synth_opt.testing.fault_container``
(its argv from :func:`synth_opt.testing.fault_container.command`), the fake app-server proposer, six train and
four heldout rows."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def fault_run_config(
    tmp_path: Path,
    argv: Sequence[str],
    *,
    run_id: str | None = None,
    budget: int = 30,
    cache: str | None = "off",
    container_extra: str = "",
) -> Path:
    """``tmp_path/gepa.toml``; ``run_id`` None keeps the default (config stem + digest), ``cache`` None the
    default cache mode."""
    run_line = f"run_id = {run_id!r}\n" if run_id is not None else ""
    cache_section = f'\n[cache]\nmode = "{cache}"\n' if cache is not None else ""
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
{run_line}output_dir = {str(tmp_path / "runs")!r}

[container]
command = [{", ".join(repr(part) for part in argv)}]
startup_timeout_seconds = 20
{container_extra}

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server"]

[gepa]
max_train_rollouts = {budget}
minibatch_size = 2
{cache_section}"""
    )
    return path
