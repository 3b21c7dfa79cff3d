"""The Crafter task container: ``python cookbooks/crafter/container.py --port 8933`` (or ``PORT=8933``).

The code lives in ``crafter_cookbook/app.py`` (a folder named ``crafter`` must not be an importable package: it would
shadow the real ``crafter`` package from PyPI that the cookbook plays).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cookbooks' shared cookbook_kit
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crafter_cookbook

from crafter_cookbook.app import build_app, build_container, main

__all__ = ["build_app", "build_container", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
