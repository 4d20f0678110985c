"""Are the arithmetic rubric's equations true? A check the rubric itself does not make.

    python bench/equation_truth.py bench/runs/cpu-demo-rcsd bench/runs/cpu-demo-rejection-sft

The `shows-equation` criterion passes on any "a op b = c" written with digits, right or wrong,
so a round can raise it by writing more equations without better arithmetic. For the first and
last in-round evaluation of each run this prints the equations per chain, the share that are
arithmetically true, and the mean words per chain.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402

EQUATION = re.compile(r"(\d+)\s*([-+*/x×])\s*(\d+)\s*=\s*(\d+)")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "x": lambda a, b: a * b,
       "×": lambda a, b: a * b, "/": lambda a, b: a / b if b else None}


def equation_stats(texts: list[str]) -> dict:
    found = true = words = 0
    for text in texts:
        words += len(text.split())
        for a, op, b, c in EQUATION.findall(text):
            found += 1
            true += OPS[op](int(a), int(b)) == int(c)
    n = max(1, len(texts))
    return {"chains": len(texts), "equations_per_chain": round(found / n, 2),
            "true_share": round(true / found, 3) if found else None, "mean_words": round(words / n, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        evals = [r for r in runs.read_samples(run_dir) if r.get("kind") == "eval"]
        steps = sorted({r["step"] for r in evals})
        for step in (steps[0], steps[-1]) if steps else ():
            stats = equation_stats([r["text"] for r in evals if r["step"] == step])
            print(json.dumps({"run": run_dir.name, "step": step, **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
