"""The command line: exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synth_opt.cli import main

VALID = f"""
[container]
url = "http://127.0.0.1:9"

[dataset]
train_ids = ["a", "b", "c"]

[proposer]
backend = "codex_app_server"
command = [{sys.executable!r}, "-m", "synth_opt.testing.fake_app_server"]
"""

BAD_CASES = {
    "unknown key": (VALID + "\n[gepa]\nmax_rolouts = 3\n", "gepa.max_rolouts"),
    "wrong type": (VALID + '\n[gepa]\nminibatch_size = "three"\n', "gepa.minibatch_size"),
    "bad enum": (VALID + '\n[gepa]\ncandidate_selector = "best"\n', "gepa.candidate_selector"),
    "zero limit": (VALID + "\n[gepa]\nmax_total_rollouts = 0\n", "gepa.max_total_rollouts"),
    "cost limit without estimate": (VALID + "\n[gepa]\nmax_cost_usd = 1.5\n", "gepa.max_cost_usd"),
    "unsupported backend": (VALID.replace("codex_app_server", "dspy"), "proposer.backend"),
    "no container": (VALID.replace('url = "http://127.0.0.1:9"', ""), "container"),
    "inline secret": (VALID + '\n[policy]\napi_key = "sk-abcdefghijklmnopqrstuvwxyz123456"\n', "policy.api_key"),
    "pareto not a subset": (
        VALID.replace('train_ids = ["a", "b", "c"]', 'train_ids = ["a", "b"]\npareto_ids = ["a", "z"]'),
        "dataset.pareto_ids",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_config_exits_2_with_one_line_naming_key_and_file(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, key = BAD_CASES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code = main(["gepa", "run", "--config", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error[config_error]: ")
    assert "Traceback" not in err
    assert "bad.toml" in err
    assert key in err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gepa", "run", "--config", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.toml" in err and err.startswith("error[config_error]")


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gepa", "launch"]) == 2
    assert capsys.readouterr().err.startswith("error[usage_error]")


def test_unreachable_container_fails_the_run_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "gepa.toml"
    path.write_text(VALID.replace("[container]", "[container]\nrequest_timeout_seconds = 2"))
    done = subprocess.run(
        [sys.executable, "-m", "synth_opt", "gepa", "run", "--config", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error[container_transport]: ")  # nothing was served: a transport failure
    assert "http://127.0.0.1:9" in last and "/health" in last
    assert "Traceback" not in done.stderr


def _feed(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return path


def test_events_compare_exits_0_when_equal_and_1_with_the_first_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = [{"n": i, "type": "seed.scored", "message": f"m{i}", "fields": {}} for i in range(1, 5)]
    b = [dict(line) for line in a]
    b[2]["message"] = "changed"
    left, same, right = _feed(tmp_path / "a", a), _feed(tmp_path / "s", a), _feed(tmp_path / "b", b[:3])
    assert main(["events", "compare", "--left", str(left), "--right", str(same)]) == 0
    assert "equal: 4 lines" in capsys.readouterr().out
    assert main(["events", "compare", "--left", str(left), "--right", str(right)]) == 1
    out = capsys.readouterr().out
    assert "2 differing line(s)" in out and "first difference at line 3" in out
    assert '"message": "m3"' in out and '"message": "changed"' in out


def test_events_replay_renders_a_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = _feed(
        tmp_path / "events.jsonl",
        [
            {
                "sequence_number": 1,
                "ts": "2026-11-26T01:02:03.456Z",
                "type": "seed.scored",
                "message": "seed ok",
                "fields": {},
                "lane": None,
            },
            {
                "sequence_number": 2,
                "ts": "2026-11-26T01:02:04.000Z",
                "type": "acceptance.decided",
                "message": "proposal 0: rejected",
                "fields": {"accepted": False},
                "lane": None,
            },
        ],
    )
    assert main(["events", "replay", "--events", str(feed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "seed ok" in lines[0] and "✗" in lines[1] and "01:02:04" in lines[1]
    assert any(line.startswith("GEPA ") for line in lines[2:]), "the display's last state follows the timeline"


def test_events_replay_of_a_missing_file_is_a_usage_level_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "replay", "--events", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl" in capsys.readouterr().err
