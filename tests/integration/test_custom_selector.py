"""Adding a parent selector is one class and its registration: a selector defined here, registered by name, is
accepted by the config and chooses every parent of a real run (a launched container process, the fake app-server
proposer)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synth_opt import ConfigError, GepaRun, load_config
from synth_opt.events.types import ProposalPlanned
from synth_opt.gepa.selection import SELECTORS, SelectionView, register_selector
from synth_opt.testing import capture_events
from synth_opt.testing.fault_container import command

from .fault_runs import fault_run_config

pytestmark = pytest.mark.slow


@dataclass(eq=False)
class Newest:
    """Always the candidate that joined the pool last."""

    name: str = "newest"
    chosen: list[str] = field(default_factory=list)

    def select(self, view: SelectionView, rng: random.Random) -> str:
        self.chosen.append(view.order[-1])
        return view.order[-1]


@pytest.fixture
def newest() -> Iterator[Newest]:
    selector = Newest()
    register_selector(selector)
    try:
        yield selector
    finally:
        del SELECTORS[selector.name]


def config_with(tmp_path: Path, name: str) -> Path:
    path = fault_run_config(tmp_path, command(), budget=40)
    path.write_text(path.read_text().replace("[gepa]\n", f'[gepa]\ncandidate_selector = "{name}"\n'))
    return path


@pytest.mark.anyio
async def test_a_registered_selector_chooses_every_parent_of_a_run(tmp_path: Path, newest: Newest) -> None:
    with capture_events() as events:
        result = await GepaRun(load_config(config_with(tmp_path, "newest"))).execute_async()
    assert result.status == "completed", result.stop_reason
    parents = [plan.parent_id for plan in events.of(ProposalPlanned)]
    assert len(parents) == result.proposals > 1 and parents == newest.chosen  # it chose each one, in order


def test_an_unregistered_selector_is_a_config_error_naming_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, "newest"))
    assert "gepa.candidate_selector" in caught.value.message
    assert "'newest'" in caught.value.message and "pareto" in caught.value.message
