"""``python -m scripts.simulator``: the device simulator's command line."""

import sys

from .cli import main
from .memory import run_lean

status = run_lean(["-m", "scripts.simulator", *sys.argv[1:]])
sys.exit(main() if status is None else status)
