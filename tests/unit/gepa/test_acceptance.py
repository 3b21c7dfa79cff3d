"""Acceptance rules: the two built in, and a rule defined here, registered by name, accepted by the config and used
by the state's decision."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from synth_opt import ConfigError, load_config
from synth_opt.gepa.acceptance import (
    ACCEPTANCE_RULES,
    Decision,
    decide,
    get_acceptance_rule,
    register_acceptance_rule,
)


def test_the_built_in_rules() -> None:
    assert decide("strict_improvement", 2.0, 3.0) == Decision(True, "improved", 2.0, 3.0)
    assert decide("strict_improvement", 2.0, 2.0) == Decision(False, "not_improved", 2.0, 2.0)
    assert decide("improvement_or_equal", 2.0, 2.0) == Decision(True, "equal", 2.0, 2.0)
    assert decide("improvement_or_equal", 2.0, 1.0) == Decision(False, "worse", 2.0, 1.0)
    with pytest.raises(ValueError, match="strict_improvement, improvement_or_equal"):
        get_acceptance_rule("always")


@dataclass(frozen=True)
class Margin:
    """Accept a child only when it beats its parent by at least one row."""

    name: str = "by_one_row"

    def judge(self, parent_sum: float, child_sum: float) -> Decision:
        accepted = child_sum >= parent_sum + 1.0
        return Decision(accepted, "improved" if accepted else "not_improved", parent_sum, child_sum)


@pytest.fixture
def margin() -> Iterator[Margin]:
    rule = register_acceptance_rule(Margin())
    try:
        yield Margin()
    finally:
        del ACCEPTANCE_RULES[rule.name]


def write(tmp_path: Path, rule: str) -> Path:
    path = tmp_path / "gepa.toml"
    path.write_text(
        f'[container]\nurl = "http://127.0.0.1:9"\n\n[dataset]\ntrain_ids = ["a"]\n\n'
        f'[proposer]\nbackend = "codex_app_server"\n\n[gepa]\nacceptance = "{rule}"\n',
        encoding="utf-8",
    )
    return path


def test_a_registered_rule_is_accepted_by_the_config_and_decides(tmp_path: Path, margin: Margin) -> None:
    assert load_config(write(tmp_path, "by_one_row")).gepa.acceptance == "by_one_row"
    assert not decide("by_one_row", 2.0, 2.5).accepted and decide("by_one_row", 2.0, 3.0).accepted
    with pytest.raises(ValueError, match="already registered"):
        register_acceptance_rule(Margin(name="strict_improvement"))


def test_an_unregistered_rule_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "by_one_row"))
    assert "gepa.acceptance" in caught.value.message and "strict_improvement" in caught.value.message
