#!/usr/bin/env python3
"""Device simulator entry point: the code is the package scripts/simulator (run ``--help`` for the options)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.simulator.cli import main  # noqa: E402 - the checkout must be importable first
from scripts.simulator.memory import run_lean  # noqa: E402

if __name__ == "__main__":
    status = run_lean(sys.argv)
    sys.exit(main() if status is None else status)
