"""A real model for tests: llama.cpp's ``llama-server`` on loopback, behind a proxy that records every call's usage.

``make local-model`` (``scripts/local_model.py``) builds ``llama-server`` and extracts a small instruct model
(SmolLM2-135M-Instruct, Q4_1, 98 MB) into ``${XDG_CACHE_HOME:-~/.cache}/synth_opt/``; :func:`find_local_model`
finds them there (through the ``local-model.json`` index the script writes) or raises
:class:`LocalModelMissingError`, which names ``make local-model``.

:class:`LocalModelServer` starts ``llama-server`` on a free loopback port with an API key, waits until it is
healthy (``GET /health``, then ``GET /v1/models``) and stops it (SIGTERM to its process group, then SIGKILL; an
orphan watchdog stops it should the test process die first). Clients talk to :attr:`LocalModelServer.base_url`
(``http://127.0.0.1:PORT/v1``): a small reverse proxy in this process that forwards each request to the server
unchanged, streams the answer back as it comes, and records the ``usage`` object the server reported for the
call, for server-sent-event streams too (a chat completion's final chunk with ``stream_options.include_usage``, a
Responses-API ``response.completed`` event). Each call becomes a :class:`ServedCall`, kept in memory
(:meth:`LocalModelServer.calls`) and appended as one JSON line to :attr:`LocalModelServer.usage_log`, so a test
can compare what synth_opt accounted for with what the model server itself reported, call by call. (The
server's own log, :attr:`LocalModelServer.server_log`, tells per-slot token counts but not which HTTP request
they belong to; its ``/metrics`` counters only add up.)

    with LocalModelServer() as server:   # find_local_model() unless paths are given
        mark = server.mark()
        ...  # an OpenAI client at server.base_url, api_key=server.api_key, model=server.model
        for call in server.calls(since=mark):
            call.usage  # {"prompt_tokens": ..., "completion_tokens": ..., "total_tokens": ...}

``python -m synth_opt.testing.local_model`` serves until Ctrl-C, for trying things by hand.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar

from synth_opt.processes import process_group_alive, stop_process_group
from synth_opt.watchdog import GroupWatchdog, start_watchdog

__all__ = [
    "FaultSchedule",
    "LocalModelMissingError",
    "LocalModelPaths",
    "LocalModelServer",
    "ServedCall",
    "find_local_model",
    "local_model_cache_dir",
    "read_usage_log",
]

INDEX_FILE = "local-model.json"
INSTALL_HINT = "run `make local-model` (python3.11 scripts/local_model.py) to build llama-server and fetch the model"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
_POLL_SECONDS = 0.1
_START_ATTEMPTS = 3
_UPSTREAM_TIMEOUT_SECONDS = 600.0


class _PortTaken(RuntimeError):
    """llama-server could not bind the port chosen for it."""


class LocalModelMissingError(RuntimeError):
    """The cached ``llama-server`` or model is not there (or not complete)."""


@dataclass(frozen=True)
class LocalModelPaths:
    """Where ``make local-model`` put the server binary and the model, and the name the model is served as."""

    llama_server: Path
    model: Path
    model_name: str
    index: Path


def local_model_cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/synth_opt``, where ``scripts/local_model.py`` installs."""
    configured = os.environ.get("XDG_CACHE_HOME")
    return (Path(configured) if configured else Path.home() / ".cache") / "synth_opt"


def find_local_model(cache_dir: Path | None = None) -> LocalModelPaths:
    """The installed server and model, from the index ``scripts/local_model.py`` writes.

    Raises :class:`LocalModelMissingError` (naming ``make local-model``) when the index, the binary, the model or
    their install stamps are missing."""
    root = cache_dir if cache_dir is not None else local_model_cache_dir()
    index = root / INDEX_FILE
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LocalModelMissingError(f"no local model index at {index}: {INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise LocalModelMissingError(f"the local model index {index} is unreadable ({exc}): {INSTALL_HINT}") from exc
    if not isinstance(data, dict):
        raise LocalModelMissingError(f"the local model index {index} is not a JSON object: {INSTALL_HINT}")
    try:
        found = LocalModelPaths(
            llama_server=Path(str(data["llama_server"])),
            model=Path(str(data["model"])),
            model_name=str(data["model_name"]),
            index=index,
        )
        stamps = [Path(str(data["server_stamp"])), Path(str(data["model_stamp"]))]
    except KeyError as exc:
        raise LocalModelMissingError(f"the local model index {index} lacks {exc}: {INSTALL_HINT}") from None
    for path in (found.llama_server, found.model, *stamps):
        if not path.is_file():
            raise LocalModelMissingError(f"{path} is missing (named by {index}): {INSTALL_HINT}")
    if not os.access(found.llama_server, os.X_OK):
        raise LocalModelMissingError(f"{found.llama_server} is not executable: {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class ServedCall:
    """One request that went through the recording proxy, with the usage the server reported for it.

    ``usage`` is the server's ``usage`` object as it sent it (None when it sent none: an error, a stream without
    ``include_usage``, a route without usage); ``timings`` is llama.cpp's own ``timings`` object when present
    (``prompt_n``, ``predicted_n``, ``prompt_per_second``, ``predicted_per_second``, ...)."""

    seq: int
    method: str
    path: str
    status: int
    stream: bool
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    response_id: str | None
    model: str | None
    started_at: float
    seconds: float
    client_disconnected: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServedCall:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def read_usage_log(path: Path) -> list[ServedCall]:
    """The calls recorded in a usage log (one JSON object a line), oldest first."""
    calls: list[ServedCall] = []
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                calls.append(ServedCall.from_json(json.loads(line)))
    return calls


class _UsageScanner:
    """Finds the last ``usage`` (and llama.cpp ``timings``) in a JSON body or in server-sent events."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self._pending = b""

    def body(self, raw: bytes) -> None:
        try:
            self._take(json.loads(raw))
        except ValueError:
            pass

    def stream(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _line(self, line: bytes) -> None:
        line = line.strip()
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload and payload != b"[DONE]":
            self.body(payload)

    def _take(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if isinstance(data.get("response"), dict):  # a Responses-API event carries the response object
            self._take(data["response"])
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        if isinstance(data.get("timings"), dict):
            self.timings = data["timings"]
        if isinstance(data.get("id"), str) and self.response_id is None:
            self.response_id = data["id"]
        if isinstance(data.get("model"), str):
            self.model = data["model"]


class _Recorder:
    """The calls of one server, in memory and appended to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._calls: list[ServedCall] = []
        path.touch()

    def record(self, **fields: Any) -> None:
        with self._lock:
            call = ServedCall(seq=len(self._calls) + 1, **fields)
            self._calls.append(call)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(call.to_json(), sort_keys=True) + "\n")

    def calls(self, since: int = 0) -> list[ServedCall]:
        with self._lock:
            return self._calls[since:]

    def count(self) -> int:
        with self._lock:
            return len(self._calls)


FaultSchedule = Callable[[int], int | None]
"""The number of a POST through the proxy (1, 2, ... since the schedule was set) -> an HTTP status to answer it
with instead of forwarding it (429, 500, ...), or None to forward it."""


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: tuple[str, int]
    recorder: _Recorder
    faults: FaultSchedule | None = None
    posts: int = 0
    fault_lock: threading.Lock

    def fault_for_next_post(self) -> int | None:
        with self.fault_lock:
            if self.faults is None:
                return None
            self.posts += 1
            return self.faults(self.posts)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    _QUIET: ClassVar[bool] = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self._QUIET:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        """Relay one request; its record is written before the client has the whole answer, so a client that
        has read an answer finds the call in the records."""
        started_at = time.time()
        started = time.monotonic()
        body = self._read_body()
        headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
        if body or self.command == "POST":
            headers["Content-Length"] = str(len(body))
        host, port = self.server.upstream
        scanner = _UsageScanner()
        fault = self.server.fault_for_next_post() if self.command == "POST" else None
        if fault is not None:  # injected: nothing reaches the server, nothing is served
            self.server.recorder.record(
                method=self.command,
                path=self.path,
                status=fault,
                stream=False,
                usage=None,
                timings=None,
                response_id=None,
                model=None,
                started_at=started_at,
                seconds=0.0,
                client_disconnected=False,
            )
            self._send_fault(fault)
            return
        upstream = http.client.HTTPConnection(host, port, timeout=_UPSTREAM_TIMEOUT_SECONDS)

        def record(status: int, stream: bool, disconnected: bool = False) -> None:
            scanner.close()
            self.server.recorder.record(
                method=self.command,
                path=self.path,
                status=status,
                stream=stream,
                usage=scanner.usage,
                timings=scanner.timings,
                response_id=scanner.response_id,
                model=scanner.model,
                started_at=started_at,
                seconds=round(time.monotonic() - started, 4),
                client_disconnected=disconnected,
            )

        try:
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
            except OSError as exc:
                record(502, False)
                self._send_plain(502, f"the local model server did not answer: {exc}")
                return
            if "text/event-stream" in (response.getheader("Content-Type") or ""):
                self._relay_stream(response, scanner, lambda disconnected: record(response.status, True, disconnected))
                return
            raw = response.read()
            scanner.body(raw)
            record(response.status, False)
            self._start_response(response, {"Content-Length": str(len(raw))})
            self.wfile.write(raw)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            upstream.close()

    def _start_response(self, response: http.client.HTTPResponse, extra: dict[str, str]) -> None:
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def _relay_stream(
        self, response: http.client.HTTPResponse, scanner: _UsageScanner, record: Callable[[bool], None]
    ) -> None:
        """Relay server-sent events chunk by chunk as they come; record before the closing chunk (or when the
        client went away: closing the upstream connection then makes the server stop generating)."""
        self._start_response(response, {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})
        try:
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                scanner.stream(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            record(True)
            raise
        record(False)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_fault(self, status: int) -> None:
        data = json.dumps({"error": {"message": f"injected fault {status}", "type": "injected", "code": status}})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data.encode())

    def _send_plain(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalModelServer:
    """``llama-server`` with the local model, on loopback, behind a usage-recording proxy (see the module doc).

    ``base_url`` (``http://127.0.0.1:PORT/v1``, the proxy), ``api_key`` and ``model`` are what an OpenAI client
    needs; ``server_url`` is the server itself (not recorded). ``parallel`` is the number of server slots (requests
    decoded together), each with ``ctx_size // parallel`` tokens of context. ``threads`` defaults to half the CPUs
    (1 on 2 cores): ggml's threads meet at a barrier after every operation, so with as many threads as cores one
    busy process beside the server slows generation about 20-fold (2.5 instead of 55 tokens/s here), while one
    thread keeps its pace. Files (``server.log``, ``usage.jsonl``) go to ``work_dir`` (a new temporary directory,
    removed on stop, when not given).
    """

    def __init__(
        self,
        paths: LocalModelPaths | None = None,
        *,
        work_dir: Path | None = None,
        api_key: str | None = None,
        ctx_size: int = 16384,
        parallel: int = 2,
        threads: int | None = None,
        start_timeout: float = 120.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.paths = paths if paths is not None else find_local_model()
        self.model = self.paths.model_name
        self.api_key = api_key if api_key is not None else f"sk-local-{secrets.token_hex(12)}"
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.threads = threads if threads is not None else max(1, len(os.sched_getaffinity(0)) // 2)
        self.start_timeout = start_timeout
        self.extra_args = extra_args
        self._remove_work_dir = work_dir is None
        self.work_dir: Path = work_dir if work_dir is not None else Path(tempfile.mkdtemp(prefix="synth-opt-local-"))
        self.server_log = self.work_dir / "server.log"
        self.usage_log = self.work_dir / "usage.jsonl"
        self.port = 0
        self.proxy_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: GroupWatchdog | None = None
        self._log_file: IO[bytes] | None = None
        self._proxy: _ProxyServer | None = None
        self._proxy_thread: threading.Thread | None = None
        self._recorder: _Recorder | None = None
        self._log_offset = 0

    # -- addresses and records -------------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        """The server itself, ``http://127.0.0.1:PORT/v1`` (calls made here are not recorded)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base_url(self) -> str:
        """The recording proxy, ``http://127.0.0.1:PORT/v1``: what clients under test should use."""
        return f"http://127.0.0.1:{self.proxy_port}/v1"

    def mark(self) -> int:
        """The number of calls recorded so far, for :meth:`calls` ``(since=...)``."""
        return self._recorder.count() if self._recorder is not None else 0

    def calls(self, since: int = 0) -> list[ServedCall]:
        """The calls recorded since ``mark`` (all by default), oldest first."""
        return self._recorder.calls(since) if self._recorder is not None else []

    def _attempt_log(self) -> str:
        """What the server logged since its latest start."""
        try:
            with self.server_log.open("rb") as file:
                file.seek(self._log_offset)
                return file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def server_log_tail(self, chars: int = 4000) -> str:
        try:
            return self.server_log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            str(self.paths.llama_server),
            "--model",
            str(self.paths.model),
            "--alias",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
            "--ctx-size",
            str(self.ctx_size),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
            "--metrics",
            "--offline",
            "--no-webui",
            "--log-colors",
            "off",
            "--log-timestamps",
            "--log-prefix",
            *self.extra_args,
        ]

    def start(self) -> LocalModelServer:
        """Start the server and the proxy; return when the model answers ``/v1/models`` (or raise)."""
        if self._process is not None:
            raise RuntimeError("the local model server is already started")
        try:
            for attempt in range(_START_ATTEMPTS):
                try:
                    self._start_server()
                    break
                except _PortTaken:  # another process took the free port first: try another one
                    self._stop_server()
                    if attempt == _START_ATTEMPTS - 1:
                        raise
            self._start_proxy()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self, port: int | None = None) -> None:
        self.port = port if port is not None else _free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LLAMA_", "HF_"))}
        self._log_file = self.server_log.open("ab")
        self._log_offset = self._log_file.tell()
        self._watchdog = start_watchdog()
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if self._watchdog is not None:
            self._watchdog.watch(self._process.pid)
        deadline = time.monotonic() + self.start_timeout
        self._wait_ready("/health", None, deadline)
        models = self._wait_ready("/v1/models", self.api_key, deadline)
        ids = [entry.get("id") for entry in models.get("data", []) if isinstance(entry, dict)]
        if self.model not in ids:
            raise RuntimeError(f"llama-server at {self.server_url} serves {ids}, not {self.model!r}")

    def _wait_ready(self, route: str, key: str | None, deadline: float) -> dict[str, Any]:
        """Poll ``route`` until it answers 200 with a JSON object; raise when the server exits or time runs out."""
        assert self._process is not None
        last = "no answer yet"
        while True:
            code = self._process.poll()
            if code is not None:
                if "couldn't bind" in self._attempt_log():
                    raise _PortTaken(f"port {self.port} was taken before llama-server bound it")
                raise RuntimeError(
                    f"llama-server exited with {code} while starting ({' '.join(self.command())}); "
                    f"its log ({self.server_log}) ends:\n{self.server_log_tail()}"
                )
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                connection.request("GET", route, headers=headers)
                response = connection.getresponse()
                raw = response.read()
                if response.status == 200:
                    data = json.loads(raw)
                    if isinstance(data, dict):
                        return data
                last = f"{response.status} {raw[:200]!r}"
            except (OSError, ValueError) as exc:
                last = repr(exc)
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama-server did not answer GET {route} with 200 within {self.start_timeout:.0f} s "
                    f"(last: {last}); its log ({self.server_log}) ends:\n{self.server_log_tail()}"
                )
            time.sleep(_POLL_SECONDS)

    def _start_proxy(self) -> None:
        self._recorder = _Recorder(self.usage_log)
        proxy = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        proxy.upstream = ("127.0.0.1", self.port)
        proxy.recorder = self._recorder
        proxy.fault_lock = threading.Lock()
        self._proxy = proxy
        self.proxy_port = proxy.server_address[1]
        self._proxy_thread = threading.Thread(
            target=proxy.serve_forever, kwargs={"poll_interval": 0.2}, name="local-model-proxy", daemon=True
        )
        self._proxy_thread.start()

    def set_faults(self, schedule: FaultSchedule | None) -> None:
        """Answer POSTs through the proxy by ``schedule`` (see :data:`FaultSchedule`; counted from this call) with
        injected statuses instead of forwarding them; None forwards everything again. An injected 429 carries
        ``Retry-After: 0``. Injected calls are recorded with their status and no usage."""
        assert self._proxy is not None, "start the server first"
        with self._proxy.fault_lock:
            self._proxy.faults = schedule
            self._proxy.posts = 0

    def kill_server(self) -> None:
        """Stop the model server now (SIGKILL to its group), leaving the proxy up: clients get 502 (nothing
        served) until :meth:`restart_server`."""
        process = self._process
        if process is not None:
            stop_process_group(process.pid, 0.0)
        self._stop_server(0.5)

    def restart_server(self) -> None:
        """Start the model server again on its old port behind the same proxy (after :meth:`kill_server`)."""
        port = self.port
        self._start_server(port)

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop the proxy and the server's process group (SIGTERM, then SIGKILL); idempotent."""
        if self._proxy is not None:
            self._proxy.shutdown()
            self._proxy.server_close()
            self._proxy = None
        if self._proxy_thread is not None:
            self._proxy_thread.join(timeout=5)
            self._proxy_thread = None
        self._stop_server(grace_seconds)
        if self._remove_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self._remove_work_dir = False

    def _stop_server(self, grace_seconds: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process.pid, grace_seconds)
            try:
                process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            if process is not None and process_group_alive(process.pid):
                stop_process_group(process.pid, 0.0)
            watchdog.release()
            deadline = time.monotonic() + 2.0
            while not watchdog.exited() and time.monotonic() < deadline:
                time.sleep(0.01)
            watchdog.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def main() -> int:
    """Serve the local model until Ctrl-C, printing what a client needs."""
    with LocalModelServer(work_dir=Path(tempfile.mkdtemp(prefix="synth-opt-local-model-"))) as server:
        print(f"base_url: {server.base_url}\napi_key:  {server.api_key}\nmodel:    {server.model}", flush=True)
        print(f"server log: {server.server_log}\nusage log:  {server.usage_log}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
