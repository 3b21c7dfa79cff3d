#!/usr/bin/env bash
# Creates the benchmark environment .venv-bench beside the project venv: synth_opt (editable, dev extras) plus the
# reference gepa==0.1.4, which the project environment never gets. Idempotent: an existing venv is reused and the
# installs are skipped when both packages are already there at the wanted versions.
#
#     bash benchmarks/setup_bench_env.sh          # PYTHON=/path/to/python3.11 to choose the interpreter
#     .venv-bench/bin/python benchmarks/vs_gepa.py
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv-bench"
GEPA_VERSION="0.1.4"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

if "$VENV/bin/python" - "$GEPA_VERSION" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version

import synth_containers  # noqa: F401  (the dev extra is installed)
import synth_opt  # noqa: F401

sys.exit(0 if version("gepa") == sys.argv[1] else 1)
PY
    echo "$VENV is ready (synth_opt and gepa==$GEPA_VERSION installed)"
    exit 0
fi

"$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" "gepa==$GEPA_VERSION"
echo "$VENV is ready (synth_opt and gepa==$GEPA_VERSION installed)"
