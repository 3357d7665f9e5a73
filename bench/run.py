"""Run every bench/bench_*.py, then print one table from bench/results/*.json.

Each benchmark writes {"name": ..., "metrics": {metric: value, ...}, "notes": "..."} to
bench/results/<name>.json. Figures are only comparable within one run on one machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"running {script.name} ...", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    rows = []
    for path in sorted((HERE / "results").glob("*.json")):
        data = json.loads(path.read_text())
        for metric, value in data.get("metrics", {}).items():
            rows.append((data.get("name", path.stem), metric, value))
    width = max((len(r[0]) + len(r[1]) for r in rows), default=10) + 5
    print(f"\n{'benchmark / metric'.ljust(width)}value")
    for name, metric, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{(name + ' / ' + metric).ljust(width)}{shown}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
