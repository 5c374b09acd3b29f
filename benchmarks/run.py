"""Run the benchmark suite and write ``benchmarks/results/<machine>.json`` plus a Markdown table.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.run                 # every section
    .venv/bin/python -m benchmarks.run --only widgets  # one section
    .venv/bin/python -m benchmarks.run --quick         # smaller, for a smoke check

Run it on an otherwise idle machine: two torch processes on two cores slow
each other down several-fold. Sections are merged into the machine's file, so
they can be run one at a time.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time

from ._common import machine, machine_tag, save

SECTIONS = {"identification": "benchmarks.identification",
            "stages": "benchmarks.stages",                # distillation, t-SNE, correction
            "widgets": "benchmarks.widget_latency",
            "level_sets": "benchmarks.level_sets",        # Bayes-TrEx samplers (issue 5)
            "planted_bugs": "benchmarks.planted_bugs",    # planted-bug benchmark (issue 7)
            "performance": "benchmarks.performance",     # bf16, halving, the default run (issue 16)
            "scale": "benchmarks.scale",                  # 5k, 20k, 60k training images (issue 25)
            "kernel_memory": "benchmarks.kernel_memory",  # the quickstart kernel (issue 27)
            "browser": "benchmarks.browser_latency"}      # real-browser latency (issue 27)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke check)")
    parser.add_argument("--tag", help="results file name (default: derived from the machine)")
    args = parser.parse_args(argv)
    info = machine()
    tag = args.tag or machine_tag(info) + ("-quick" if args.quick else "")
    for name in args.only or list(SECTIONS):
        t = time.perf_counter()
        print(f"[{name}] running…", flush=True)
        if importlib.util.find_spec(SECTIONS[name]) is None:
            print(f"[{name}] not built yet ({SECTIONS[name]} is missing); skipped", flush=True)
            continue
        rows = importlib.import_module(SECTIONS[name]).run(quick=args.quick)
        path = save(name, rows, info, tag)
        for r in rows:
            print(f"  {r['what']}: {r['value']}  {r.get('target', '')}", flush=True)
        print(f"[{name}] {time.perf_counter() - t:.0f}s → {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
