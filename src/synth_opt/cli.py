"""The ``synth-opt`` command line (also installed as ``synth-optimizers``).

Exit codes: 0 success, 1 a run that failed, 2 a usage or config error, 130 after Ctrl-C. Errors print one line,
``error[<code>]: <message>``, never a bare traceback. Logs go to stderr; the summary and command output to stdout.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from synth_opt.errors import RunFailedError, SynthOptimizerError, UsageError, collapse_exception_group, file_failure
from synth_opt.listening import check_bindable, serve_until_stopped
from synth_opt.result import GepaResult

if TYPE_CHECKING:
    from synth_opt.run import GepaRun

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see '{self.prog} --help'")


def _port(text: str) -> int:
    """An argparse type: a TCP port to listen on, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; give a number from 1 to 65535")
    return port


def _parser() -> argparse.ArgumentParser:
    from synth_opt.version import __version__

    parser = _Parser(prog="synth-opt", description="GEPA prompt optimization against task containers.")
    parser.add_argument("--version", action="version", version=f"synth-opt {__version__}", help="print the version")
    commands = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)

    gepa = commands.add_parser("gepa", help="run GEPA optimizations")
    gepa_commands = gepa.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = gepa_commands.add_parser("run", help="run one optimization from a TOML config")
    run.add_argument("--config", required=True, help="path to the gepa.toml config")
    run.add_argument("--fresh", action="store_true", help="replace an existing run directory")
    run.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live display")
    run.add_argument("--log-format", choices=("console", "json"), default="console", help="log line format")
    run.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="lowest level logged"
    )

    service = gepa_commands.add_parser("service", help="the standing GEPA service (litestar) over a queue database")
    service.add_argument(
        "--db", required=True, help="the service database: a path or sqlite:///path, created if missing"
    )
    service.add_argument("--bind", default="127.0.0.1:8879", help="host:port; loopback unless a token is set")
    service.add_argument("--worker-id", default="local-gepa", help="the name leases are taken under")
    service.add_argument(
        "--config-root", default=".", help="submitted configs, and the paths inside them, must lie under it"
    )
    service.add_argument(
        "--runs-root", help="a second root the paths inside submitted configs may use (default: the config root)"
    )
    service.add_argument(
        "--allow-commands",
        action="store_true",
        help="let submitted configs set container.command or proposer.command (anyone who can reach the API can "
        "then run programs on this machine)",
    )
    service.add_argument("--token-env", help="environment variable holding the bearer token")
    run_next = gepa_commands.add_parser("run-next", help="claim and execute the next queued request, then exit")
    run_next.add_argument("--db", required=True, help="the service database to claim from: a path or sqlite:///path")
    run_next.add_argument(
        "--worker-id", default=f"run-next-{os.getpid()}", help="the name the lease is taken under (default: by pid)"
    )
    run_next.add_argument(
        "--config-root", help="hold the request's config to the service's rules with this config root"
    )
    run_next.add_argument("--runs-root", help="with --config-root: the service's runs root")
    run_next.add_argument(
        "--allow-commands", action="store_true", help="with --config-root: configs may set their own commands"
    )

    accept = gepa_commands.add_parser("accept", help="fresh, cached and readonly runs of one config, compared")
    accept.add_argument("--config", required=True, help="path to the gepa.toml config")

    plan = gepa_commands.add_parser("plan", help="what the budget buys, before anything is spent")
    plan.add_argument("--config", required=True, help="the run's TOML config")
    plan.add_argument(
        "--acceptance-rate", type=float, default=0.5, help="the share of proposals expected to be accepted (0.5)"
    )
    plan.add_argument("--json", action="store_true", help="print the forecast as JSON")
    plan.add_argument(
        "--probe",
        type=int,
        metavar="N",
        help="measure first: launch the container, run N seed rollouts and one proposer call (this spends them)",
    )
    workspace = commands.add_parser("workspace", help="inspect and repair workspace databases")
    workspace_commands = workspace.add_subparsers(dest="command", required=True, parser_class=_Parser)
    status = workspace_commands.add_parser("status", help="counts, projection freshness and invariants")
    status.add_argument("--db", required=True, help="runs/<id>/workspace.sqlite or a service database")
    status.add_argument("--json", action="store_true", help="JSON even on a terminal")
    repair = workspace_commands.add_parser("repair", help="rebuild derived tables from their source rows")
    repair.add_argument("--db", required=True, help="runs/<id>/workspace.sqlite")
    repair.add_argument("--json", action="store_true", help="print the report as JSON")
    recover = workspace_commands.add_parser("recover", help="requeue expired leases of a service database")
    recover.add_argument("--db", required=True, help="the service database")

    task = commands.add_parser("task", help="serve a task written as a Python function (synth_opt.task)")
    task_commands = task.add_subparsers(dest="command", required=True, parser_class=_Parser)
    task_serve = task_commands.add_parser("serve", help="serve module:task as a container on this host")
    task_serve.add_argument("reference", help="module:attribute of the Task, importable from the current folder")
    task_serve.add_argument("--port", type=_port, default=8000, help="the port to listen on (8000)")
    task_serve.add_argument("--host", default="127.0.0.1", help="the address to bind (loopback unless --token-env)")
    task_serve.add_argument("--threads", type=int, help="how many calls of a sync score function run at once")
    task_serve.add_argument("--token-env", help="the environment variable holding the bearer token clients send")
    view = commands.add_parser("view", help="browse runs, their lineage and candidates in a web browser")
    view.add_argument("--runs", required=True, help="a folder of run directories (a config's run.output_dir)")
    view.add_argument("--port", type=_port, default=8880, help="the port to listen on (8880)")
    view.add_argument("--host", default="127.0.0.1", help="the address to bind (loopback unless --token-env)")
    view.add_argument("--token-env", help="the environment variable holding the bearer token clients send")
    events = commands.add_parser("events", help="read event feeds")
    event_commands = events.add_subparsers(dest="command", required=True, parser_class=_Parser)
    replay = event_commands.add_parser("replay", help="render a feed as a readable timeline")
    replay.add_argument("--events", required=True, help="events.jsonl or events.normalized.jsonl")
    replay.add_argument("--decisions", action="store_true", help="only the decision events")
    compare = event_commands.add_parser("compare", help="compare two normalized feeds; exit 1 when they differ")
    compare.add_argument("--left", required=True, help="the first events.normalized.jsonl")
    compare.add_argument("--right", required=True, help="the second events.normalized.jsonl")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Output into a pipe the reader closed (``... | head -1``) ends quietly
    with 0."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # what is still buffered fails here, not at interpreter exit
    except BrokenPipeError as error:
        if not _stdout_closed():
            return _unexpected(error)
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:  # a Ctrl-C while the output of a finished command was still being written
        print("error[run_cancelled]: interrupted by Ctrl-C; committed results are kept", file=sys.stderr)
        return 130
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.group == "gepa" and args.command == "run":
            return _gepa_run(args)
        if args.group == "gepa" and args.command == "plan":
            return _gepa_plan(args)
        if args.group == "gepa" and args.command == "accept":
            return _gepa_accept(args)
        if args.group == "gepa" and args.command == "service":
            from synth_opt.service.cli import serve
            from synth_opt.service.queue import queue_location

            return serve(
                queue_location(args.db),
                args.bind,
                args.worker_id,
                Path(args.config_root),
                args.token_env,
                runs_root=_path(args.runs_root),
                allow_commands=args.allow_commands,
            )
        if args.group == "gepa" and args.command == "run-next":
            from synth_opt.service.cli import run_next_command
            from synth_opt.service.queue import queue_location

            return run_next_command(
                queue_location(args.db),
                args.worker_id,
                config_root=_path(args.config_root),
                runs_root=_path(args.runs_root),
                allow_commands=args.allow_commands,
            )
        if args.group == "workspace" and args.command == "recover":
            from synth_opt.service.cli import recover_command
            from synth_opt.service.queue import queue_location

            return recover_command(queue_location(args.db))
        if args.group == "workspace":
            from synth_opt.service.queue import is_postgres_url
            from synth_opt.workspace import repair_command, status_command

            if is_postgres_url(args.db):
                from synth_opt.service.cli import queue_status_command

                return queue_status_command(args.db, args.command)
            if args.command == "status":
                return status_command(Path(args.db), as_json=args.json or not sys.stdout.isatty())
            return repair_command(Path(args.db), as_json=args.json)
        if args.group == "task" and args.command == "serve":
            from synth_opt.task.serve import serve_task

            if args.threads is not None and args.threads < 1:
                raise UsageError(f"--threads {args.threads}: must be at least 1")
            return _serve(
                args,
                lambda: serve_task(
                    args.reference, host=args.host, port=args.port, max_threads=args.threads, token_env=args.token_env
                ),
            )
        if args.group == "view":
            from synth_opt.view import serve_view

            return _serve(
                args, lambda: serve_view(Path(args.runs), host=args.host, port=args.port, token_env=args.token_env)
            )
        if args.group == "events" and args.command == "replay":
            return _events_replay(args)
        if args.group == "events" and args.command == "compare":
            return _events_compare(args)
        raise UsageError(f"unknown command {args.group} {args.command}")
    except SystemExit as exit_:  # --help and friends
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        print("error[run_cancelled]: interrupted by Ctrl-C; committed results are kept", file=sys.stderr)
        return 130
    except SynthOptimizerError as error:
        print(error.one_line(), file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        raise  # main() tells a closed stdout from another broken pipe
    except Exception as error:  # a bug: still one line, with the way to get details
        return _unexpected(error)


def _serve(args: argparse.Namespace, start: Callable[[], int]) -> int:
    """``view`` and ``task serve``: their --host and --port checked before the server starts."""
    flag = f"--host {args.host} --port {args.port}"
    check_bindable(args.host, args.port, flag)
    return serve_until_stopped(start, f"{args.host}:{args.port}", flag)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _unexpected(error: BaseException) -> int:
    failed = file_failure(error) or RunFailedError(
        f"unexpected {type(error).__name__}: {error}; re-run with --log-level debug"
    )
    print(failed.one_line(), file=sys.stderr)
    return failed.exit_code


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (its write end polls as an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file descriptor (captured), or no poll()
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not complain about the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _gepa_run(args: argparse.Namespace) -> int:
    from synth_opt.config import load_config
    from synth_opt.progress import choose_observer
    from synth_opt.run import GepaRun

    config = load_config(args.config)
    observer = choose_observer(
        live=not args.no_progress and sys.stderr.isatty(),
        log_format=args.log_format,
        log_level=args.log_level,
    )
    run = GepaRun(config, fresh=args.fresh, observer=observer)
    result = anyio.run(_execute_with_signals, run)
    print(render_summary(result))
    return 0


async def _execute_with_signals(run: GepaRun) -> GepaResult:
    """Run with SIGINT and SIGTERM turned into a graceful cancel; a second signal aborts at once."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signals, run)
            result = await run.execute_async()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise collapse_exception_group(group) from None
    return result


async def _cancel_on_signals(run: GepaRun) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            name = signal.Signals(received).name
            if run.cancel_handle.requested:
                print(f"error[run_cancelled]: second {name}: aborting at once", file=sys.stderr)
                os._exit(130)
            print(f"{name} received: stopping the run (again to abort at once)", file=sys.stderr)
            run.cancel(f"{name} received")


def _gepa_plan(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from synth_opt.config import load_config
    from synth_opt.gepa.forecast import forecast
    from synth_opt.run.plan import plan_inputs, probe_run, render_plan, with_probe

    if not 0.0 <= args.acceptance_rate <= 1.0:
        raise UsageError(f"--acceptance-rate {args.acceptance_rate}: give a share between 0 and 1")
    if args.probe is not None and args.probe < 1:
        raise UsageError(f"--probe {args.probe}: give the number of seed rollouts to measure (at least 1)")
    config = load_config(args.config)
    inputs = plan_inputs(config)
    probe = None
    if args.probe is not None:
        probe = anyio.run(probe_run, config, args.probe)
        inputs = with_probe(inputs, probe)
    plan = forecast(inputs, acceptance_rate=args.acceptance_rate)
    if args.json:
        data = plan.to_json() | ({"probe": asdict(probe)} if probe is not None else {})
        print(json.dumps(data, indent=2))
    else:
        print(render_plan(config, plan, inputs, probe))
    return 0


def _gepa_accept(args: argparse.Namespace) -> int:
    from synth_opt.config import load_config
    from synth_opt.run.replay_check import accept_config

    report = anyio.run(accept_config, load_config(args.config))
    for label, result in report.results.items():
        rollouts = result.rollouts_used["total"]
        print(f"{label:<9} {result.run_id:<40} best {result.best_candidate_id}  rollouts {rollouts}")
        print(f"          {result.normalized_event_feed_path}")
    for label, comparison in report.comparisons.items():
        verdict = "identical" if comparison.equal else f"{comparison.differing} differing line(s)"
        print(f"fresh vs {label}: {verdict} ({comparison.left_lines} lines)")
    for problem in report.problems:
        print(f"FAILED: {problem}")
    print("acceptance passed" if report.passed else "acceptance failed")
    return 0 if report.passed else 1


def _events_replay(args: argparse.Namespace) -> int:
    from synth_opt.events.replay import render_timeline

    path = Path(args.events)
    for line in render_timeline(path, decisions_only=args.decisions):
        print(line)
    with path.open("rb") as head:
        raw_feed = b"sequence_number" in head.read(200)
    if raw_feed:  # a raw feed: show the display's last state
        from rich.console import Console

        from synth_opt.events.normalize import read_feed
        from synth_opt.progress import replay_summary

        Console().print(replay_summary(read_feed(path), run_id=path.resolve().parent.name))
    return 0


def _events_compare(args: argparse.Namespace) -> int:
    from synth_opt.events.compare import compare_feeds

    result = compare_feeds(Path(args.left), Path(args.right))
    if result.equal:
        print(f"equal: {result.left_lines} lines")
        return 0
    print(f"differ: {result.differing} differing line(s) ({result.left_lines} vs {result.right_lines} lines)")
    print(f"first difference at line {result.first_difference}:")
    print(f"  left:  {result.left_line if result.left_line is not None else '<no line>'}")
    print(f"  right: {result.right_line if result.right_line is not None else '<no line>'}")
    return 1


def render_summary(result: GepaResult) -> str:
    def score(value: float | None) -> str:
        return "not evaluated" if value is None else f"{value:.4f}"

    rollouts = result.rollouts_used
    lines = []
    if result.from_stored_result:
        lines.append(f"run {result.run_id} had already finished: stored result shown, nothing was called")
    lines += [
        f"run {result.run_id}: {result.status} (stop reason: {result.stop_reason})",
        f"  train   (pareto rows)   seed {score(result.seed_train_score)}   best {score(result.best_train_score)}",
        f"  heldout                 seed {score(result.seed_heldout_score)}   best {score(result.best_heldout_score)}",
        *_report_lines(result.heldout_report),
        f"  rollouts used: {rollouts['train']} train + {rollouts['heldout']} heldout = {rollouts['total']}"
        + (f" (and {result.rollouts_reused['total']} reused)" if result.rollouts_reused["total"] else ""),
        f"  proposals: {result.proposals}, accepted: {result.accepted}"
        + (f", failed proposals: {result.proposals_failed}" if result.proposals_failed else ""),
        f"  best candidate: {result.best_candidate_id}",
        f"  cost: {'unknown' if result.cost_usd is None else f'${result.cost_usd:.4f}'}, "
        f"tokens: {result.usage['total']['total_tokens']}",
        *_discarded_line(result),
        f"  manifest: {result.manifest_path}",
        f"  events:   {result.event_feed_path}",
        f"  registry: {result.candidate_registry_path}",
        f"  frontier: {result.frontier_path}",
    ]
    return "\n".join(lines)


def _report_lines(report: dict[str, Any] | None) -> list[str]:
    """The heldout report (best against seed, row by row), and a warning when the pareto gain did not carry over."""
    if not report:
        return []
    from synth_opt.gepa.report import describe_report

    lines = [f"  heldout best - seed   {describe_report(report)}"]
    if report["ci95_low"] <= 0 <= report["ci95_high"]:
        lines.append(f"  (the interval includes 0: on these {report['n']} rows the difference may be noise)")
    if report.get("overfit_flag"):
        lines.append(
            f"  overfit? the pareto gain ({report['train_gain']:+.4f}) is far above the heldout gain "
            f"({report['heldout_gain']:+.4f}): the best candidate may fit the pareto rows rather than the task"
        )
    return lines


def _discarded_line(result: GepaResult) -> list[str]:
    """Spend thrown away (work after the last checkpoint, done again on resume; outage probes); none: no line."""
    discarded = result.usage.get("discarded") or {}
    total = discarded.get("total") or {}
    if not discarded.get("rollouts") and not discarded.get("probes") and not total.get("calls"):
        return []
    cost = total.get("cost_usd")
    probes = f" and {discarded['probes']} outage probes" if discarded.get("probes") else ""
    return [
        f"  discarded (paid, then thrown away): {discarded['rollouts']} rollouts done again after restarts{probes}, "
        f"{total.get('total_tokens', 0)} tokens, cost {'unknown' if cost is None else f'${cost:.4f}'}"
    ]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
