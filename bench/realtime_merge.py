"""Several bench/realtime.py runs of the same tree as one: every repeat pooled.

    .venv/bin/python bench/realtime_merge.py bench/results/realtime-A.json \
        bench/results/realtime-B.json

On a shared machine one run's medians can land on either side of a target
(this machine's Socket.IO fan-out moved 1.16x to 1.28x socket.io on Node
between two runs of the same code). Pooling the repeats of runs made of the
same tree, with the same settings, gives medians over all of them, and a
table that bench/performance.py reads like any other run's
(``--from RUN.json MERGED.json``).

Each (server, workload) row present and successful in every input gets the
medians (realtime.py's ``medians``) of all the inputs' repeats, its
``load_bound`` flag recomputed over them. Inputs made of different trees
(``tether_commit``) or with other settings than the repeat count are refused:
their repeats do not measure the same thing. Results:
bench/results/realtime-merged-<date>.json and .md.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from limits import realtime_row
from report import load_bound, merge_inputs

from realtime import LABELS, LOAD_BOUND_PCT, markdown, medians

Json = dict[str, Any]


def merge(runs: list[Json], sources: list[str], command: str) -> Json:
    """One result (``{"environment", "rows"}``) from several runs of one tree."""
    first = runs[0]["environment"]
    for run, source in zip(runs[1:], sources[1:], strict=True):
        env = run["environment"]
        if env["tether_commit"] != first["tether_commit"]:
            raise ValueError(
                f"{source} measured {env['tether_commit']}, not {first['tether_commit']}"
            )
        mine = {k: v for k, v in env["settings"].items() if k != "repeat"}
        theirs = {k: v for k, v in first["settings"].items() if k != "repeat"}
        if mine != theirs:
            raise ValueError(f"{source} has other settings than {sources[0]}: {mine} != {theirs}")
    keys = [(r["server"], r["workload"]) for r in runs[0]["rows"]]
    rows = []
    for server, workload in keys:
        # realtime_row finds only rows that succeeded: a failed one is missing.
        found = [realtime_row(run["rows"], server, workload) for run in runs]
        row: Json = {"server": server, "workload": workload}
        if any(r is None for r in found):
            rows.append({**row, "ok": False, "error": "not in every merged run, or failed in one"})
            continue
        pooled = [repeat for r in found if r is not None for repeat in r["runs"]]
        row.update(medians(pooled), ok=True)
        if workload != "idle":
            row["load_bound"] = any(
                load_bound(r["load_cpu_pct"], r["server_cpu_pct"], LOAD_BOUND_PCT) for r in pooled
            )
        rows.append(row)
    environment = {
        **first,
        "date": " and ".join(run["environment"]["date"] for run in runs),
        "command": command,
        "merged_from": [
            {"file": source, "command": run["environment"]["command"]}
            for run, source in zip(runs, sources, strict=True)
        ],
        "settings": {
            **first["settings"],
            "repeat": sum(run["environment"]["settings"]["repeat"] for run in runs),
        },
        "loadavg_after": runs[-1]["environment"]["loadavg_after"],
    }
    return {"environment": environment, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths, runs, results_dir, command = merge_inputs(argv, __doc__.split("\n\n")[0], "realtime")
    try:
        merged = merge(runs, [str(path) for path in paths], command)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    # realtime.py names it after its --base-src; the merged commands say which.
    LABELS.setdefault("tether-base", "tether at --base-src (the merged runs' commands)")
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.gmtime())
    out = results_dir / f"realtime-merged-{stamp}"
    out.with_suffix(".json").write_text(json.dumps(merged, indent=1))
    out.with_suffix(".md").write_text(markdown(merged["environment"], merged["rows"]))
    print(f"wrote {out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
