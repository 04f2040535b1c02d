"""``python -m scripts.simulator``: the device simulator's command line."""

import sys

from .cli import main

sys.exit(main())
