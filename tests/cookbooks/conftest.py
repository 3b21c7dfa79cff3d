"""The cookbooks' packages (``banking77``, ``tblite``, ``code_review``, and crafter's ``crafter_cookbook``) are
importable by their tests."""

from __future__ import annotations

import sys
from pathlib import Path

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"
for folder in (COOKBOOKS, COOKBOOKS / "crafter"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
