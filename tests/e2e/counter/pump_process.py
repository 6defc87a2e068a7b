"""A simulated NE-1000 in a process of its own, on TCP (``socket://``), so that killing the server
does not kill the pump — as with real hardware. Prints its URL on the first line, then writes what
it has delivered to the status file given as the first argument every 50 ms until killed.

    python -m tests.e2e.counter.pump_process STATUS.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from devices.simulators import Ne1000Simulator


def main(status_path: str) -> None:
    status = Path(status_path)
    with Ne1000Simulator(transport="tcp") as sim:
        print(sim.url, flush=True)
        while True:
            state = {"delivered_ml": str(sim.delivered_ml), "counter_ml": str(sim.counter_ml), "prompt": sim.prompt,
                     "alarms": list(sim.alarm_history), "runs": sim.count("RUN"), "errors": len(sim.errors)}
            partial = status.with_suffix(".tmp")
            partial.write_text(json.dumps(state), encoding="utf-8")
            partial.replace(status)
            time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1])
