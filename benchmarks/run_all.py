"""Run every benchmark in this folder and print its figures (`make bench`).

Benchmarks print numbers; they never fail on a target. Targets are stated in each
benchmark's output next to the measured figure, so a regression is visible without
turning a slow CI machine into a red build.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    failed = []
    for bench in sorted(here.glob("bench_*.py")):
        print(f"== {bench.name}", flush=True)
        if subprocess.run([sys.executable, str(bench)], check=False).returncode != 0:
            failed.append(bench.name)
    if failed:
        print(f"benchmarks that could not run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
