"""The public surface of the package is explicit and stable."""

from __future__ import annotations

import synth_opt

EXPECTED = {
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
    "RunCancelledError",
    "RunFailedError",
    "RunStateError",
    "SynthOptimizerError",
    "UsageError",
    "__version__",
    "load_config",
    "repair_workspace",
    "workspace_status",
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
