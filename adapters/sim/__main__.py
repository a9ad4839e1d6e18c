"""``python -m adapters.sim <protocol> ...``: a simulator in a process of its own (the demo runs BACnet so).

A module of its own rather than ``python -m adapters.sim.bacnet``: that would import the simulator twice (once
through this package, once as ``__main__``).
"""

from __future__ import annotations

import sys

from adapters.sim import bacnet

MAINS = {"bacnet": bacnet.main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MAINS:
        print(f"usage: python -m adapters.sim {{{','.join(MAINS)}}} ...", file=sys.stderr)
        sys.exit(2)
    sys.exit(MAINS[sys.argv[1]](sys.argv[2:]))
