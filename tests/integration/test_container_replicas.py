"""``[container] urls``: standing replicas of one container, every one a real fault-container process on loopback.

- a run over three replicas makes the decisions of a run over one, and the rollouts are spread over the three;
- a replica SIGKILLed mid-run (``--fault die``) is taken out and routed around: the run completes with the
  decisions of a run that never lost it; so does a replica that answers ``/health`` but fails every rollout;
- replicas that report different tasks are refused at start-up, naming both URLs; a replica down at start-up is
  taken out and the run goes on with the others;
- with every replica dead the run fails as an outage, in bounded time.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from synth_opt import GepaRun, load_config
from synth_opt.container.launch import free_loopback_port
from synth_opt.errors import ConfigError, ContainerContractError
from synth_opt.events.normalize import read_feed
from synth_opt.events.types import ContainerReplica
from synth_opt.result import GepaResult
from tests.integration.test_container_outage import standing_container
from tests.integration.test_container_outage import write_config as outage_config

pytestmark = pytest.mark.slow

DIE_AFTER = 6  # rollouts the doomed replica serves before it SIGKILLs itself: the seed's and part of the search


@contextmanager
def replica(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A standing fault container (the run does not launch it), 20 ms a rollout."""
    with standing_container("--delay-ms", "20", *args) as started:
        yield started


@contextmanager
def replicas(*argvs: Sequence[str]) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    with ExitStack() as stack:
        yield [stack.enter_context(replica(*argv)) for argv in argvs]


def write_config(directory: Path, urls: list[str], *, outage_timeout: float = 30.0) -> Path:
    """The outage tests' run (six train rows, the fake proposer, every evaluation live) over the replicas."""
    return outage_config(
        directory, None, urls=urls, request_timeout=5, outage_timeout=outage_timeout, rollout_workers=6
    )


def decisions(result: GepaResult) -> list[str]:
    """The normalized feed's decisions (the config line names the URLs, so it is left out)."""
    assert result.normalized_event_feed_path is not None
    lines = Path(result.normalized_event_feed_path).read_text().splitlines()
    return [line for line in lines if json.loads(line)["type"] != "run.config"]


def served(url: str) -> int:
    stats = httpx.get(f"{url}/fault/stats", timeout=5).json()
    return int(stats["normal_replies"])


def replica_events(result: GepaResult) -> list[ContainerReplica]:
    feed = Path(result.event_feed_path)
    return [event.data for event in read_feed(feed) if isinstance(event.data, ContainerReplica)]


@pytest.fixture(scope="module")
def one_replica(tmp_path_factory: pytest.TempPathFactory) -> GepaResult:
    with replica() as (url, _):
        result = GepaRun(load_config(write_config(tmp_path_factory.mktemp("one"), [url]))).execute()
    assert result.status == "completed" and result.proposals >= 3
    return result


def test_a_run_over_three_replicas_decides_as_a_run_over_one(tmp_path: Path, one_replica: GepaResult) -> None:
    with replicas((), (), ()) as started:
        urls = [url for url, _ in started]
        result = GepaRun(load_config(write_config(tmp_path, urls))).execute()
        counts = [served(url) for url in urls]
    assert result.status == "completed"
    assert decisions(result) == decisions(one_replica)
    assert result.best_candidate == one_replica.best_candidate
    assert sum(counts) == result.rollouts_used["total"]  # every live rollout served once, by one replica
    assert all(count > 0 for count in counts), counts  # spread over all three
    assert replica_events(result) == []


def test_a_replica_killed_mid_run_is_routed_around_and_the_decisions_stand(
    tmp_path: Path, one_replica: GepaResult
) -> None:
    with replicas((), ("--fault", "die", "--after", str(DIE_AFTER)), ()) as started:
        urls = [url for url, _ in started]
        result = GepaRun(load_config(write_config(tmp_path, urls))).execute()
        doomed = started[1][1]
        assert doomed.poll() is not None  # it did die mid-run
    assert result.status == "completed"
    assert decisions(result) == decisions(one_replica)
    assert result.best_candidate == one_replica.best_candidate
    out = [event for event in replica_events(result) if event.state == "out"]
    assert [event.url for event in out] == [urls[1]]  # the dead one, taken out once (it never answers again)


def test_a_replica_that_answers_health_but_fails_every_rollout_changes_no_decision(
    tmp_path: Path, one_replica: GepaResult
) -> None:
    """Its /health brings it back in after every failure, but a rollout it failed goes to the other replica: no
    rollout is struck three times (a degraded attempt would change the scores)."""
    with replicas((), ("--fault", "http500", "--after", "0")) as started:
        urls = [url for url, _ in started]
        result = GepaRun(load_config(write_config(tmp_path, urls))).execute()
        assert served(urls[1]) == 0
    assert result.status == "completed"
    assert decisions(result) == decisions(one_replica)
    assert {event.url for event in replica_events(result) if event.state == "out"} == {urls[1]}


def test_replicas_of_different_containers_are_refused_naming_both(tmp_path: Path) -> None:
    with replicas((), ("--train", "8")) as started:
        urls = [url for url, _ in started]
        with pytest.raises(ContainerContractError) as caught:
            GepaRun(load_config(write_config(tmp_path, urls))).execute()
    assert urls[0] in caught.value.message and urls[1] in caught.value.message
    assert "GET /taskset" in caught.value.message


def test_a_replica_down_at_start_up_is_taken_out_and_the_run_goes_on(tmp_path: Path, one_replica: GepaResult) -> None:
    dead = f"http://127.0.0.1:{free_loopback_port()}"  # nothing listens there
    with replica() as (url, _):
        result = GepaRun(load_config(write_config(tmp_path, [dead, url]))).execute()
    assert result.status == "completed"
    assert decisions(result) == decisions(one_replica)
    assert [(event.url, event.state) for event in replica_events(result)][:1] == [(dead, "out")]


def test_with_every_replica_dead_the_run_fails_as_an_outage_in_bounded_time(tmp_path: Path) -> None:
    with replicas(("--fault", "die", "--after", str(DIE_AFTER)), ("--fault", "die", "--after", str(DIE_AFTER))) as s:
        urls = [url for url, _ in s]
        started = time.monotonic()
        with pytest.raises(ContainerContractError, match=r"outage|no replica"):
            GepaRun(load_config(write_config(tmp_path, urls, outage_timeout=3.0))).execute()
    assert time.monotonic() - started < 3.0 + 5 + 20


@pytest.mark.parametrize(
    ("container", "problem"),
    [
        ('url = "http://127.0.0.1:1"\nurls = ["http://127.0.0.1:2"]', "drop container.url"),
        ("urls = []", "is empty"),
        ('urls = ["127.0.0.1:2"]', "must start with http://"),
        ('urls = ["http://127.0.0.1:2", "http://127.0.0.1:2"]', "twice"),
    ],
)
def test_bad_replica_lists_are_config_errors_naming_the_key(tmp_path: Path, container: str, problem: str) -> None:
    path = tmp_path / "gepa.toml"
    proposer = '[proposer]\nbackend = "codex_app_server"\n'
    path.write_text(f"[container]\n{container}\n\n[dataset]\ntrain_ids = {{count = 4}}\n\n{proposer}")
    with pytest.raises(ConfigError, match=rf"container\.urls(\[0\])?: .*{problem}"):
        load_config(path)
