"""No orphans: when the optimizer dies by SIGKILL, its launched container and proposer die too, grandchildren
included, and so do the watchdogs that guard them.

Every process the optimizer starts inherits an environment marker, so the test finds them (and anything they
started) in ``/proc/*/environ`` whatever their parent or process group has become.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from synth_opt.watchdog import process_group_alive, start_watchdog

pytestmark = pytest.mark.slow

TINY = Path(__file__).with_name("tiny_container.py")
MARKER_VARIABLE = "SYNTH_OPT_TEST_MARKER"
RUNNING_SECONDS = 16.0  # the optimizer runs longer than 15 s before it is killed
GONE_WITHIN_SECONDS = 2.0


def _config(tmp_path: Path) -> Path:
    # The proposer is a shell that starts a grandchild (``sleep``) and becomes the fake app-server, which answers
    # up to turn/start and then stays silent: the run keeps going with a proposer group alive. The container
    # spawns a grandchild too.
    proposer = f"sleep 300 & exec {sys.executable} -m synth_opt.testing.fake_app_server --mode never-answer"
    path = tmp_path / "gepa.toml"
    path.write_text(
        f"""
[run]
run_id = "orphans"

[container]
command = [{sys.executable!r}, {str(TINY)!r}, "{{port}}", "--spawn-child"]
startup_timeout_seconds = 30

[dataset]
train_ids = {{count = 6}}
heldout_ids = {{count = 4}}

[proposer]
backend = "codex_app_server"
command = ["/bin/sh", "-c", {proposer!r}]
timeout_seconds = 3600
message_stall_timeout_seconds = 3600

[gepa]
max_train_rollouts = 1000000
minibatch_size = 2

[cache]
mode = "off"
"""
    )
    return path


def _marked(marker: str) -> dict[int, str]:
    """Live (non-zombie) processes whose environment holds the marker: pid -> command line."""
    found: dict[int, str] = {}
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if stat[stat.rfind(")") + 2] not in "ZX":
            found[int(entry.name)] = cmdline
    return found


def _wait_for(marker: str, wanted: dict[str, str], optimizer: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        commands = list(_marked(marker).values())
        missing = [name for name, part in wanted.items() if not any(part in command for command in commands)]
        if not missing:
            return
        assert optimizer.poll() is None, f"the optimizer exited with {optimizer.returncode} before the test killed it"
        assert time.monotonic() < deadline, f"never saw {missing} running; saw {commands}"
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigkill_of_the_optimizer_leaves_no_process_behind(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER_VARIABLE: marker}
    synth_opt = Path(sys.executable).with_name("synth-opt")
    errors = tmp_path / "optimizer.err"
    started = time.monotonic()
    with errors.open("wb") as stderr:
        optimizer = subprocess.Popen(
            [str(synth_opt), "gepa", "run", "--config", str(_config(tmp_path)), "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait_for(
            marker,
            {
                "container": str(TINY),
                "container's child": "time.sleep(120)",
                "proposer": "synth_opt.testing.fake_app_server",
                "proposer's child": "sleep 300",
            },
            optimizer,
            limit=90,
        )
        time.sleep(max(0.0, started + RUNNING_SECONDS - time.monotonic()))
        assert optimizer.poll() is None, errors.read_text()

        optimizer.send_signal(signal.SIGKILL)
        optimizer.wait()
        deadline = time.monotonic() + GONE_WITHIN_SECONDS
        left = _marked(marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _marked(marker)
        assert not left, f"still running {GONE_WITHIN_SECONDS:g} s after the optimizer's SIGKILL: {left}"
    finally:
        if optimizer.poll() is None:
            optimizer.kill()
            optimizer.wait()
        for pid in _marked(marker):  # whatever this test started and left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_run_that_ends_normally_leaves_no_process_behind(tmp_path: Path) -> None:
    """The normal stop path releases every watchdog: nothing the run started outlives it."""
    marker = uuid.uuid4().hex
    path = _config(tmp_path)
    text = path.read_text().replace("max_train_rollouts = 1000000", "max_train_rollouts = 30")
    path.write_text(text.replace("--mode never-answer", "--mode ok"))
    synth_opt = Path(sys.executable).with_name("synth-opt")
    done = subprocess.run(
        [str(synth_opt), "gepa", "run", "--config", str(path), "--no-progress"],
        cwd=tmp_path,
        env={**os.environ, MARKER_VARIABLE: marker},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert done.returncode == 0, done.stderr
        assert "proposer.called" in (tmp_path / "runs" / "orphans" / "events.jsonl").read_text()
        deadline = time.monotonic() + GONE_WITHIN_SECONDS
        left = _marked(marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _marked(marker)
        assert not left, f"still running after the run ended: {left}"
    finally:
        for pid in _marked(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# A process that guards a stubborn group (it ignores SIGTERM and has a grandchild) with a watchdog, prints the
# group's id, and waits to be killed.
_GUARDIAN = """
import subprocess, sys
from synth_opt.watchdog import start_watchdog
watchdog = start_watchdog()
stubborn = "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"
group = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
watchdog.watch(group.pid)
print(group.pid, flush=True)
sys.stdin.read()
"""


def _wait_until(condition: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_watchdog_kills_a_group_that_ignores_sigterm_once_its_owner_is_killed(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    guardian = subprocess.Popen(
        [sys.executable, "-c", _GUARDIAN],
        env={**os.environ, MARKER_VARIABLE: marker},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert guardian.stdout is not None
        pgid = int(guardian.stdout.readline())
        assert _wait_until(lambda: len(_marked(marker)) >= 4, 30), _marked(marker)  # owner, watchdog, group of 2
        guardian.kill()
        guardian.wait()
        assert _wait_until(lambda: not _marked(marker), 5), _marked(marker)
        assert not process_group_alive(pgid)
    finally:
        if guardian.poll() is None:
            guardian.kill()
            guardian.wait()
        if guardian.stdin is not None:
            guardian.stdin.close()
        if guardian.stdout is not None:
            guardian.stdout.close()
        for pid in _marked(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# the owner starts a group (a leader and its child) and dies before it tells the watchdog which group it is
_DIES_BEFORE_WATCH = """
import os, signal, subprocess, sys
from synth_opt.watchdog import start_watchdog
watchdog = start_watchdog()
child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); " \\
    "time.sleep(300)"
group = subprocess.Popen([sys.executable, "-c", child], env=watchdog.environment(None), start_new_session=True)
print(group.pid, flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_owner_killed_before_it_names_its_group_leaves_no_process_behind() -> None:
    marker = uuid.uuid4().hex
    owner = subprocess.Popen(
        [sys.executable, "-c", _DIES_BEFORE_WATCH],
        env={**os.environ, MARKER_VARIABLE: marker},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdin is not None and owner.stdout is not None
        pgid = int(owner.stdout.readline())
        assert _wait_until(lambda: len(_marked(marker)) >= 4, 30), _marked(marker)  # owner, watchdog, group of 2
        owner.stdin.write("die\n")
        owner.stdin.flush()
        owner.wait()
        assert owner.returncode == -signal.SIGKILL
        assert _wait_until(lambda: not _marked(marker), 5), _marked(marker)
        assert not process_group_alive(pgid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for stream in (owner.stdin, owner.stdout):
            if stream is not None:
                stream.close()
        for pid in _marked(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_released_watchdog_exits_and_leaves_the_group_alone() -> None:
    watchdog = start_watchdog()
    assert watchdog is not None
    group = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        watchdog.watch(group.pid)
        watchdog.release()
        assert _wait_until(watchdog.exited, 10), "the watchdog did not exit after its release"
        assert watchdog.process.returncode == 0
        time.sleep(0.2)
        assert group.poll() is None, "a released watchdog must not signal the group"
    finally:
        watchdog.kill()
        group.kill()
        group.wait()


def test_a_watchdog_exits_by_itself_once_its_group_is_gone() -> None:
    watchdog = start_watchdog()
    assert watchdog is not None
    group = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        watchdog.watch(group.pid)
        group.kill()
        group.wait()
        assert _wait_until(watchdog.exited, 10), "the watchdog outlived the group it guarded"
    finally:
        watchdog.kill()
        if group.poll() is None:
            group.kill()
            group.wait()


def test_a_workspace_writer_whose_run_died_exits_quietly(tmp_path: Path) -> None:
    """The writer child learns of the run's death from the end of its stdin; its stats then have no reader."""
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(
        [sys.executable, "-m", "synth_opt.workspace.child", str(tmp_path / "workspace.sqlite"), "r1"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    os.close(read_end)  # the run is gone: nobody reads the stats
    assert writer.stdin is not None and writer.stderr is not None
    writer.stdin.write(b"[]\n")
    writer.stdin.close()
    try:
        assert writer.wait(timeout=60) == 0
        assert writer.stderr.read() == b""
    finally:
        writer.stderr.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
