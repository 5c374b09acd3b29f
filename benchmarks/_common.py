"""Shared helpers of the benchmark suite: timing, machine description, result files."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """Describe where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's ``VmHWM`` when there is one: ``getrusage``'s ``ru_maxrss`` of a
    process started by ``subprocess`` also counts the *parent's* resident
    memory at the fork (measured: a child of a parent holding 2 GB reports
    1,921 MB, its VmHWM 14 MB), so a run started from a benchmark that has
    already worked would look as large as the benchmark.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_tag(info: dict) -> str:
    """A file name for the machine: ``cpu-2core`` or ``gpu-nvidia-h100-80gb-hbm3``."""
    if info["gpu"]:
        return "gpu-" + "-".join(info["gpu"].lower().replace("nvidia", "nvidia ").split())
    return f"cpu-{info['cores']}core"


def timeit(fn, *, repeat: int = 20, warmup: int = 1) -> dict:
    """Run ``fn(i)`` ``warmup + repeat`` times; return the median, p90 and max in ms."""
    for i in range(warmup):
        fn(-1 - i)
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times),
            "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
            "max_ms": times[-1], "repeat": repeat}


def save(section: str, rows: list, info: dict, tag: str) -> Path:
    """Merge ``rows`` of ``section`` into ``results/<tag>.json`` and rewrite ``<tag>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{tag}.json"
    doc = json.loads(path.read_text()) if path.exists() else {"sections": {}}
    doc["machine"] = info
    doc["sections"][section] = {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float))
    os.replace(tmp, path)
    (RESULTS / f"{tag}.md").write_text(markdown(doc))
    return path


def markdown(doc: dict) -> str:
    """One Markdown table per section: every row's ``what``, ``value``, ``target`` and ``note``."""
    m = doc["machine"]
    out = [f"# Benchmarks on {m['gpu'] or m['cpu']} ({m['cores']} cores, torch {m['torch']})", ""]
    for name, sec in doc["sections"].items():
        out += [f"## {name} (measured {sec['measured']})", "",
                "| what | measured | target | met | note |", "|---|---|---|---|---|"]
        for r in sec["rows"]:
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            out.append(f"| {r['what']} | {r['value']} | {r.get('target', '')} | {met} "
                       f"| {r.get('note', '')} |")
        out.append("")
    return "\n".join(out)
