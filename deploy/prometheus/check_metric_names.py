#!/usr/bin/env python3
"""Checks that every metric named in the alerting rules and the Grafana dashboard is
one raftd exports, i.e. is listed in docs/metrics.md (histograms' _bucket, _sum and
_count series included), or is Prometheus' own `up`.

Usage: check_metric_names.py DOCS ALERTS_YAML DASHBOARD_JSON
Standard library only: the rules file is read line by line for its `expr:` values.
"""

import json
import re
import sys

# PromQL words that look like metric names but are not.
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}
ALWAYS_PRESENT = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_names(path):
    """Names in the first column of the tables of docs/metrics.md."""
    names = set()
    with open(path, encoding="utf-8") as docs:
        for line in docs:
            match = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|", line)
            if match:
                names.add(match.group(1))
    return names


def rule_expressions(path):
    """The `expr:` values of a rules file, inline or as YAML block scalars."""
    exprs = []
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value and value[0] not in "|>":
            exprs.append(value.strip("'\""))
            continue
        block = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i])
            i += 1
        exprs.append("\n".join(block))
    return exprs


def dashboard_expressions(path):
    """Every panel target's `expr` and every query variable's query."""
    with open(path, encoding="utf-8") as file:
        dashboard = json.load(file)
    exprs = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append(target["expr"])
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        # label_values(METRIC_SELECTOR, label): only the selector names a metric.
        match = re.match(r"^\s*label_values\((.*),\s*[a-zA-Z_]+\s*\)\s*$", query or "")
        exprs.append(match.group(1) if match else (query or ""))
    return exprs


def metric_names(expr):
    """The metric names an expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr
    )
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", expr):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def main():
    docs, alerts, dashboard = sys.argv[1:4]
    known = documented_names(docs) | ALWAYS_PRESENT
    if not known - ALWAYS_PRESENT:
        sys.exit(f"{docs}: no metric table found")
    failures = []
    checked = set()
    for source, exprs in (
        (alerts, rule_expressions(alerts)),
        (dashboard, dashboard_expressions(dashboard)),
    ):
        if not exprs:
            failures.append(f"{source}: no expressions found")
        for expr in exprs:
            for name in sorted(metric_names(expr)):
                checked.add(name)
                base = name
                for suffix in HISTOGRAM_SUFFIXES:
                    if name.endswith(suffix) and name[: -len(suffix)] in known:
                        base = name[: -len(suffix)]
                if base not in known:
                    failures.append(f"{source}: {name} is not in {docs} (in: {expr.strip()})")
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"{len(checked)} metric names used by the rules and the dashboard are all documented")


if __name__ == "__main__":
    main()
