"""Wall time and peak memory of a whole `she-bench run --method srpo` (defaults), as a subprocess.

Each repeat runs `python -m she_bench.cli run --method METHOD [--model M] [overrides]` into a fresh
temporary output dir and reports
  - wall seconds of the subprocess,
  - peak RSS: of the process tree (psutil, sum over the tree, polled every --poll seconds) and the
    largest single process (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss, exact, over all children
    waited for so far in this script),
  - from the run's manifest.json: warm_start_seconds, train_seconds, eval_seconds, total_seconds,
  - from train_log.jsonl: median seconds_per_step of the main stage.
The warm start is reused from the she-bench cache (SHE_BENCH_CACHE or ~/.cache/she-bench) unless
--fresh-cache is given (then it is trained inside the timed run: much longer).
The child gets OMP_NUM_THREADS=--threads (default 1, as the other perf scripts; 0 leaves it unset).

    python benchmarks/perf/run_wall.py                  # one run, ~5+ min on a loaded 2-core CPU
    python benchmarks/perf/run_wall.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median

ROOT = Path(__file__).resolve().parents[2]


def tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def one_run(cmd, env, poll: float) -> dict:
    import psutil

    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def watch():
        p = psutil.Process(child.pid)
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(p))
            done.wait(poll)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    tail = []
    for line in child.stdout:
        tail = (tail + [line.rstrip()])[-15:]
    rc = child.wait()
    wall = time.perf_counter() - t0
    done.set()
    watcher.join()
    return {"rc": rc, "wall_s": wall, "peak_tree_rss_mb": peak[0] / 2**20,
            "max_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "tail": tail}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="srpo")
    ap.add_argument("--model", help="default: the config's (toy-1m)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (0: leave unset)")
    ap.add_argument("--poll", type=float, default=0.2, help="RSS polling interval, seconds")
    ap.add_argument("--fresh-cache", action="store_true", help="use an empty SHE_BENCH_CACHE (retrains the warm start)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value) passed to she-bench run")
    args = ap.parse_args(argv)

    print(machine())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    results = []
    for r in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="she-perf-run-"))
        if args.fresh_cache:
            env["SHE_BENCH_CACHE"] = str(out / "cache")
        cmd = [sys.executable, "-m", "she_bench.cli", "run", "--method", args.method, "--output-dir", str(out / "runs")]
        if args.model:
            cmd += ["--model", args.model]
        cmd += args.overrides
        print(f"repeat {r}: {' '.join(cmd)}", flush=True)
        res = one_run(cmd, env, args.poll)
        manifests = list((out / "runs").glob("*/*/manifest.json"))
        if res["rc"] != 0 or not manifests:
            print("\n".join(res["tail"]))
            raise SystemExit(f"run failed (rc={res['rc']})")
        manifest = json.loads(manifests[0].read_text())
        log = [json.loads(line) for line in (manifests[0].parent / "train_log.jsonl").read_text().splitlines() if line.strip()]
        sps = [x["seconds_per_step"] for x in log if x.get("stage") == "main" and x.get("seconds_per_step")]
        res.update({k: manifest.get(k) for k in ("warm_start_seconds", "train_seconds", "eval_seconds", "total_seconds")})
        res["median_seconds_per_step"] = median(sps[1:] or sps)
        res["steps"] = len(sps)
        res["run_dir"] = str(manifests[0].parent)
        print(f"  wall {res['wall_s']:.1f} s; manifest warm_start {res['warm_start_seconds']} s, train {res['train_seconds']} s, "
              f"eval {res['eval_seconds']} s, total {res['total_seconds']} s; {res['steps']} steps, median "
              f"{res['median_seconds_per_step']:.3f} s/step; peak RSS tree {res['peak_tree_rss_mb']:.0f} MiB, "
              f"largest process {res['max_child_rss_mb']:.0f} MiB", flush=True)
        print("  " + "\n  ".join(res["tail"][-4:]))
        results.append(res)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    keys = ("wall_s", "warm_start_seconds", "train_seconds", "eval_seconds", "total_seconds",
            "median_seconds_per_step", "peak_tree_rss_mb", "max_child_rss_mb")
    print(f"\n{args.method}, {len(results)} repeat(s), medians:")
    summary = {}
    for k in keys:
        vals = [x[k] for x in results if x.get(k) is not None]
        summary[k] = median(vals)
        print(f"  {k:26s} {summary[k]:10.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv),
                                               "summary": summary, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
