"""The public surface of the package is explicit and stable."""

from __future__ import annotations

import pytest

import synth_opt

EXPECTED = {
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
    "RunCancelledError",
    "RunFailedError",
    "RunLockedError",
    "RunStateError",
    "SynthOptimizerError",
    "UsageError",
    "__version__",
    "QueueConflictError",
    "RunRequestNotFoundError",
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
}


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(synth_opt.__all__) == EXPECTED
    for name in synth_opt.__all__:
        assert getattr(synth_opt, name) is not None


def test_every_error_has_a_stable_distinct_code_under_one_root() -> None:
    errors = [getattr(synth_opt, name) for name in synth_opt.__all__ if name.endswith("Error")]
    codes = [error.error_code for error in errors]
    assert len(set(codes)) == len(codes)
    assert all(issubclass(error, synth_opt.SynthOptimizerError) for error in errors)
    assert synth_opt.ConfigError.exit_code == 2 and synth_opt.RunCancelledError.exit_code == 130
    assert synth_opt.CacheMissError.exit_code == 1


def test_small_modules_import_without_the_whole_package() -> None:
    """An offline proposer starts once per proposal: importing its server must not load the run machinery."""
    import subprocess
    import sys

    code = (
        "import sys, synth_opt.proposers.stdio_app_server, synth_opt.policies.chat\n"
        "heavy = [m for m in ('synth_opt.run', 'synth_opt.service.app', 'litestar', 'structlog') if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_given_a_path_instead_of_a_config_says_how_to_load_one() -> None:
    with pytest.raises(TypeError, match=r"GepaRun takes a GepaConfig, not str: load one with load_config\(path\)"):
        synth_opt.GepaRun("gepa.toml")  # type: ignore[arg-type]
