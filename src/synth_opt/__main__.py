"""``python -m synth_opt``: the same program as the ``synth-opt`` command."""

import sys

from synth_opt.cli import main

sys.exit(main())
