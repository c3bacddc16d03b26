#!/usr/bin/env python3
"""Paired ratios from ab.sh's output: each build's throughput and CPU over the
passthrough's in the same round, and the new build's over the old one's.

    crates/claude-tower-bench/scripts/ab-summary.py OUT
"""
import statistics
import sys


def rounds(path):
    """The runs, grouped by round (each round starts with `b`)."""
    groups, current = [], {}
    with open(path) as lines:
        for line in lines:
            fields = line.split()
            if len(fields) != 4:
                continue
            name, answers, server, total = fields[0], *map(float, fields[1:])
            if name == "b" and current:
                groups.append(current)
                current = {}
            current[name] = (answers, server, total)
    if current:
        groups.append(current)
    return groups


def spread(values):
    return f"median {statistics.median(values):.3f} [{min(values):.2f}..{max(values):.2f}]"


def main():
    groups = [g for g in rounds(sys.argv[1]) if {"b", "old", "new"} <= g.keys()]
    if not groups:
        sys.exit("no complete round (b, old, new) in the file")
    print(f"{len(groups)} rounds")
    for name in ("old", "new"):
        throughput = [g[name][0] / g["b"][0] for g in groups]
        total = [g[name][2] / g["b"][2] for g in groups]
        server = [g[name][1] - g["b"][1] for g in groups]
        print(
            f"{name}: throughput / (b) {spread(throughput)}; all processes' CPU per answer / (b) "
            f"{spread(total)}; server CPU per answer over (b) median {statistics.median(server):+.1f} µs"
        )
    pairs = [g["new"][0] / g["old"][0] for g in groups]
    cpu = [g["new"][1] / g["old"][1] for g in groups]
    print(f"new / old: throughput {spread(pairs)}; server CPU per answer {spread(cpu)}")


if __name__ == "__main__":
    main()
