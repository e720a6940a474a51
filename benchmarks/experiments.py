"""Run the recorded experiments and print the rows of docs/results.md.

    python benchmarks/experiments.py                  # every configs/experiment/*.yaml
    python benchmarks/experiments.py burgers heat     # some of them
    python benchmarks/experiments.py --table          # only print the table of finished runs

Each experiment trains with ``python train.py experiment=<name>`` into
``outputs/experiments/<name>`` (one at a time: parallel runs would share the cores and distort
the times); the table reads their ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "experiments"
EVERY = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


def run(name: str) -> int:
    """Train one recipe; its exit status."""
    (OUT / name / "metrics.json").unlink(missing_ok=True)  # an earlier run's result must not pass for this one's
    command = [sys.executable, "train.py", f"experiment={name}", "trainer.progress=false",
               f"hydra.run.dir={OUT / name}"]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def table(names: list[str], failed: dict[str, int]) -> str:
    rows = ["| experiment | steps (Adam + quasi-Newton) | train time | rel L2 | other |",
            "| --- | --- | --- | --- | --- |"]
    for name in names:
        path = OUT / name / "metrics.json"
        if name in failed or not path.is_file():
            status = f"failed (exit status {failed[name]})" if name in failed else "not run"
            rows.append(f"| `{name}` | – | – | {status} | |")
            continue
        m = json.loads(path.read_text())
        phases = m.get("phases", {})
        steps = f"{phases.get('adam', {}).get('steps', 0)} + {phases.get('lbfgs', {}).get('steps', 0)}"
        other = ", ".join(f"{k} {m[k]:.4g}" for k in ("kappa", "kappa_rel_error", "alpha", "alpha_rel_error") if k in m)
        rows.append(f"| `{name}` | {steps} | {m['train_seconds']:.0f} s | {m.get('rel_l2', float('nan')):.2e} | {other} |")
    cpu = platform.processor() or platform.machine()
    return "\n".join(rows) + f"\n\n{cpu}, {torch.get_num_threads()} threads, PyTorch {torch.__version__}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="experiment", help=f"default: all of {', '.join(EVERY)}")
    parser.add_argument("--table", action="store_true", help="only print the table of finished runs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(EVERY))
    if unknown:
        parser.error(f"unknown experiments {unknown}; choose from {', '.join(EVERY)}")
    names = args.names or EVERY
    failed = {}
    if not args.table:
        for name in names:
            status = run(name)
            if status:
                failed[name] = status
    print(table(names, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
