"""Run the recorded experiments and print the rows of docs/results.md.

    python benchmarks/experiments.py                  # every configs/experiment/*.yaml
    python benchmarks/experiments.py burgers heat     # some of them
    python benchmarks/experiments.py --table          # only print the table of finished runs

Each experiment trains with ``python train.py experiment=<name>`` into
``outputs/experiments/<name>`` (one at a time: parallel runs would share the cores and distort
the times); the table reads their ``metrics.json``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "experiments"


def run(name: str) -> None:
    command = [sys.executable, "train.py", f"experiment={name}", "trainer.progress=false",
               f"hydra.run.dir={OUT / name}"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=False)


def table(names: list[str]) -> str:
    rows = ["| experiment | steps | train time | rel L2 | other |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        path = OUT / name / "metrics.json"
        if not path.is_file():
            rows.append(f"| `{name}` | – | – | not run | |")
            continue
        m = json.loads(path.read_text())
        other = ", ".join(f"{k} {m[k]:.4g}" for k in ("kappa", "kappa_rel_error", "alpha", "alpha_rel_error") if k in m)
        rows.append(f"| `{name}` | {m['steps']} | {m['train_seconds']:.0f} s | {m.get('rel_l2', float('nan')):.2e} | {other} |")
    cpu = platform.processor() or platform.machine()
    return "\n".join(rows) + f"\n\n{cpu}, {torch.get_num_threads()} threads, PyTorch {torch.__version__}"


def main(argv: list[str]) -> None:
    every = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
    names = [a for a in argv if not a.startswith("--")] or every
    unknown = set(names) - set(every)
    if unknown:
        sys.exit(f"unknown experiments {sorted(unknown)}; choose from {', '.join(every)}")
    if "--table" not in argv:
        for name in names:
            run(name)
    print(table(names))


if __name__ == "__main__":
    main(sys.argv[1:])
