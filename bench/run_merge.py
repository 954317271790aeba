"""Several bench/run.py runs of the same tree as one: every repeat pooled.

    .venv/bin/python bench/run_merge.py bench/results/results-A.json \
        bench/results/results-B.json

bench/realtime_merge.py's counterpart for the raw WebSocket workloads. On this
shared machine one run's medians moved the raw fan-out from 1.34x to 0.93x
picows between two runs of the same path, so a ratio that matters is taken
over more repeats than one run holds.

Each (workload, variant, subject) row present and successful in every input
gets the run with the median figure (the rate; memory for idle) of all the
inputs' repeats, as bench/run.py picks one, and the pooled spread. Inputs made
of different trees (``tether_commit``), or with other settings than the
repeat count, are refused: their repeats do not measure the same thing.
Results: bench/results/results-merged-<date>.json, which
``bench/performance.py --from`` reads like any run's, and latest-merged.md.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import report
from run import finish_row

Json = dict[str, Any]
HEAD = ("workload", "variant", "subject", "loop")
#: Environment keys that may differ between runs of one tree.
PER_RUN = ("date", "command", "repeat", "loadavg_before", "loadavg_after")


def repeats(row: Json) -> list[Json]:
    """A row's runs: those it kept, or itself for a run of ``--repeat 1``."""
    if "repeats" in row:
        return list(row["repeats"])
    return [{k: v for k, v in row.items() if k not in (*HEAD, "ok", "spread")}]


def merge(runs: list[Json], sources: list[str], command: str) -> Json:
    """One result (``{"environment", "runs"}``) from several runs of one tree."""
    first = runs[0]["environment"]
    same = {k: v for k, v in first.items() if k not in PER_RUN}
    for run, source in zip(runs[1:], sources[1:], strict=True):
        env = run["environment"]
        if env["tether_commit"] != first["tether_commit"]:
            raise ValueError(
                f"{source} measured {env['tether_commit']}, not {first['tether_commit']}"
            )
        theirs = {k: v for k, v in env.items() if k not in PER_RUN}
        if theirs != same:
            differ = sorted(k for k in same.keys() | theirs.keys() if same.get(k) != theirs.get(k))
            raise ValueError(f"{source} differs from {sources[0]} in {', '.join(differ)}")
    rows = []
    for head in ({k: r[k] for k in HEAD} for r in runs[0]["runs"]):
        found = [
            next((r for r in run["runs"] if all(r.get(k) == head[k] for k in HEAD)), None)
            for run in runs
        ]
        if any(r is None or not r["ok"] for r in found):
            rows.append(finish_row(head, [], "not in every merged run, or failed in one"))
            continue
        rows.append(finish_row(head, [x for r in found if r is not None for x in repeats(r)], None))
    environment = {
        **first,
        "date": " and ".join(run["environment"]["date"] for run in runs),
        "command": command,
        "repeat": sum(run["environment"]["repeat"] for run in runs),
        "merged_from": [
            {"file": source, "command": run["environment"]["command"]}
            for run, source in zip(runs, sources, strict=True)
        ],
    }
    return {"environment": environment, "runs": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    description = __doc__.split("\n\n")[0] if __doc__ else ""
    paths, runs, results_dir, command = report.merge_inputs(argv, description, "run")
    try:
        merged = merge(runs, [str(path) for path in paths], command)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    json_path = results_dir / f"results-merged-{stamp}.json"
    json_path.write_text(json.dumps(merged, indent=1) + "\n")
    md_path = results_dir / "latest-merged.md"
    md_path.write_text(report.markdown(merged["environment"], merged["runs"], report.BASELINES))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
