"""The deterministic offline proposer for the Crafter plan agent, speaking the codex app-server protocol over stdio:
``python cookbooks/crafter/offline_proposer.py``. The code lives in ``crafter_cookbook/proposer.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cookbooks' shared cookbook_kit
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crafter_cookbook

from crafter_cookbook.proposer import serve

if __name__ == "__main__":
    raise SystemExit(serve(sys.stdin, sys.stdout))
