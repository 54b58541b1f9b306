"""Put a learning report's tables into benchmarks/RESULTS.md.

`benchmarks/learning.py --report-only ... --out DIR` writes DIR/learning.md and DIR/learning.json. This script
copies learning.md (under its title) between the `<!-- rerun tables: begin -->` / `end` markers of RESULTS.md
(task headings one level down) and rebuilds the one-table goal summary between the `<!-- goal summary: ... -->`
markers from learning.json (one row per task and dynamic-sampling setting, GraphGPO with the options chosen
for the task in `TASKS`).

    python benchmarks/learning_assemble.py [--report benchmarks/results/learning/rerun] \
        [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.learning import TASKS, goal_table  # noqa: E402

TABLES = ("<!-- rerun tables: begin -->", "<!-- rerun tables: end -->")
GOAL = ("<!-- goal summary: begin -->", "<!-- goal summary: end -->")


def replace_between(text: str, markers: tuple[str, str], body: str, where: str) -> str:
    begin, end = markers
    pattern = re.escape(begin) + ".*?" + re.escape(end)
    if not re.search(pattern, text, flags=re.S):
        raise ValueError(f"{where}: no '{begin}' ... '{end}' block to replace")
    return re.sub(pattern, lambda _: f"{begin}\n{body.strip()}\n{end}", text, count=1, flags=re.S)


def goal_summary(tasks: list[dict]) -> str:
    """The goal checks of all tasks as one table with a task column."""
    rows: list[str] = []
    for task in tasks:
        table = goal_table(task, TASKS.get(task["task"], {}).get("graphgpo_chosen", "")).splitlines()
        if not table:
            continue
        if not rows:
            rows = ["| task " + table[0], "|---" + table[1]]
        rows += [f"| {task['task']} " + line for line in table[2:]]
    return "\n".join(rows)


def assemble(report: Path, results: Path) -> str:
    md = (report / "learning.md").read_text(encoding="utf-8")
    if not md.startswith("# ") or "\n### " not in md:
        raise ValueError(f"{report / 'learning.md'}: not a learning report (a '# ' title and '### ' task sections)")
    body = md.split("\n", 1)[1]  # everything under the report's title
    tasks = json.loads((report / "learning.json").read_text(encoding="utf-8"))["tasks"]
    text = results.read_text(encoding="utf-8")
    text = replace_between(text, TABLES, body.replace("\n### ", "\n#### "), str(results))
    summary = goal_summary(tasks)
    text = replace_between(text, GOAL, summary, str(results))
    results.write_text(text, encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", default="benchmarks/results/learning/rerun", help="folder with learning.md/json")
    p.add_argument("--results", default="benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    print(assemble(Path(args.report), Path(args.results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
