"""The device simulator: officers' phones (``server.client`` devices) work offline and sync; replicas and the
server are checked against an oracle fold. ``python -m scripts.simulator --help`` or ``scripts/simulate_devices.py``.
"""

from .checks import Check, Resolution
from .cli import main, summary_text
from .device import HOUSEHOLD_FORM, SimDevice, SimError
from .faults import FaultyTransport, Latencies, ReplyLost, RequestLost, percentile
from .geo import Boundaries
from .oracle import Accepted, canon, oracle_fold
from .run import SAMPLE_VILLAGES, Config, Simulation

__all__ = [
    "HOUSEHOLD_FORM",
    "SAMPLE_VILLAGES",
    "Accepted",
    "Boundaries",
    "Check",
    "Config",
    "FaultyTransport",
    "Latencies",
    "ReplyLost",
    "RequestLost",
    "Resolution",
    "SimDevice",
    "SimError",
    "Simulation",
    "canon",
    "main",
    "oracle_fold",
    "percentile",
    "summary_text",
]
