"""CPU time of a server's whole process group, read from /proc (Linux).

Client-side throughput is capped by whichever side saturates first; on a small machine a
Python client often does. CPU seconds the server spent per request do not depend on that,
so the runner reports them beside throughput.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = 0
    found = False
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ... utime(14) stime(15).
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) != pgid:
            continue
        found = True
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS if found else None
