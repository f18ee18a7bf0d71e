"""she-bench: train (SFT, DPO, GRPO, SRPO/SHE) and evaluate LLMs that judge query-product relevance with
step-by-step reasoning, on relevance benchmarks with long-tail slices, and report accuracy, step quality, entropy
and claim verdicts."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", help="benchmark card name or path (default toyshop)")
    p.add_argument("--data-dir", help="data folder, overriding the card's")
    p.add_argument("--model", help="toy-1m, toy-5m, toy-20m, toy-1m-catalogue, smollm2-135m or a local model folder")
    p.add_argument("--seed", type=int)
    p.add_argument("--engine", choices=["transformers", "vllm"])
    p.add_argument("--output-dir", help="where run directories go (default runs/)")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value (dotted keys, e.g. eval.limit=50)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="she-bench", description=__doc__)
    parser.add_argument("--verbose", action="store_true",
                        help="also show library logs, Trainer dictionaries and warnings "
                             "(train_log.jsonl has every figure)")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate a model on a benchmark split into a run directory")
    _common(ev)
    ev.add_argument("--split")
    ev.add_argument("--limit", type=int)

    run = sub.add_parser("run", help="train with a method from the shared warm start, then evaluate")
    run.add_argument("--method", default="srpo",
                     help="a recipe name under baselines/ (sft, dpo, grpo, srpo, ...) or a YAML path")
    run.add_argument("--experiment", action="append", default=[], metavar="FILE",
                     help="a claim experiment this run is for (recorded with its analysis' hash; ablate sets it)")
    run.add_argument("--warm-start-hash", metavar="SHA256",
                     help="refuse to train unless the warm start has these weights (ablate sets it to finish a cell "
                          "on the build it began on)")
    _common(run)

    ab = sub.add_parser("ablate", help="run a suite of methods x variants x benchmarks x seeds")
    ab.add_argument("--suite", required=True, nargs="+",
                    help="suite YAML(s) (e.g. benchmarks/suites/toyshop.yaml); several run as one grid, "
                         "shared runs once")
    ab.add_argument("--workers", type=int, default=1, help="runs in parallel on this machine")
    ab.add_argument("--output-dir", help="overrides the suite's output_dir")
    ab.add_argument("--profile", choices=["gpu"], help="lay the suites' profile section over them (e.g. gpu: more "
                                                       "levels, seeds and longer budgets)")
    ab.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    ab.add_argument("--evidence", metavar="FILE", help="a claims report's evidence.jsonl.xz: runs it holds are left "
                                                     "out (e.g. reports/claims/evidence.jsonl.xz)")
    ab.add_argument("--emit", metavar="FILE",
                    help="write the unfinished runs as commands, one per line ('-' for stdout)")

    rep = sub.add_parser("report", help="tables, plots and an HTML page across run directories")
    rep.add_argument("run_dirs", nargs="+", help="run directories, or folders searched for them")
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument("--suite",
                     help="suite YAML whose `report:` section declares the baseline and the primary comparisons")
    rep.add_argument("--baseline", help="variant the others are compared with (default: the suite's, else grpo)")
    rep.add_argument("--bootstrap", type=int, default=10_000, help="query resamples behind intervals and p-values")

    cl = sub.add_parser("claims", help="the claim experiments' fixed analyses and verdicts over their runs")
    cl.add_argument("--experiments", nargs="+", required=True, help="experiment YAMLs (benchmarks/experiments/*.yaml)")
    cl.add_argument("--runs", default="runs", help="the output folder their ablate runs went to (default: runs)")
    cl.add_argument("--out", required=True, help="output folder (claims.json, summary.md, a page and plot per claim, "
                                                 "index.html, and evidence.jsonl.xz: what the analyses read of each "
                                                 "run, read back for runs whose folders are not under --runs)")
    cl.add_argument("--bootstrap", type=int, help="query resamples behind intervals and p-values (default 2000)")
    cl.add_argument("--profile", choices=["gpu"], help="the profile the runs were made with (ablate --profile)")

    data = sub.add_parser("data", help="inspect benchmarks")
    dsub = data.add_subparsers(dest="data_command", required=True)
    desc = dsub.add_parser("describe", help="print a data card: counts per split, label and slice")
    desc.add_argument("name")
    desc.add_argument("overrides", nargs="*",
                      help="card overrides, key=value (e.g. options.n_train=20000 rationale_share=0.1)")
    desc.add_argument("--data-dir")
    desc.add_argument("--json", action="store_true")
    dsub.add_parser("list", help="list benchmark cards")
    return parser


def config_from_args(args, method: str, recipe: str | None = None):
    from she_bench.config import make_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    flags = {"benchmark": args.benchmark, "data_dir": args.data_dir, "model": args.model, "seed": args.seed,
             "engine": args.engine, "output_dir": args.output_dir}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if getattr(args, "split", None):
        overrides.setdefault("eval", {})["split"] = args.split
    if getattr(args, "limit", None) is not None:
        overrides.setdefault("eval", {})["limit"] = args.limit
    if recipe is None:
        overrides["method"] = method
    return make_config(recipe, overrides)


def _print_result(result) -> None:
    if result.already_done:
        print(f"already done: {result.path}")
    _print_summary(result.path, result.metrics)


def cmd_eval(args) -> int:
    from she_bench.pipeline import evaluate_model

    _print_result(evaluate_model(config_from_args(args, "eval"), args.argv))
    return 0


def cmd_run(args) -> int:
    from she_bench.ablate import analysis_hash
    from she_bench.pipeline import run_method

    experiments = [{"file": Path(f).name, "analysis_hash": analysis_hash(Path(f))} for f in args.experiment]
    result = run_method(config_from_args(args, args.method, recipe=args.method), args.argv,
                        expect_warm_start=args.warm_start_hash, experiments=experiments)
    if result is not None:  # None on data-parallel replicas
        _print_result(result)
    return 0


def cmd_ablate(args) -> int:
    from she_bench.ablate import emit, load_suites, run_jobs

    jobs = load_suites([Path(p) for p in args.suite], args.output_dir, args.profile)
    if args.evidence:  # runs a claims report already holds need no folder here, cells kept on one build
        from she_bench.ablate import on_one_build
        from she_bench.report import evidence

        kept, notes = on_one_build(jobs, evidence.load(Path(args.evidence)))
        for note in notes:
            print(note)
        print(f"{len(jobs) - len(kept)} of {len(jobs)} runs left out: their evidence is in {args.evidence}")
        jobs = kept
    if args.dry_run:
        for j in jobs:
            print(f"{j.status():8s} {j.run.path}")
        print(f"{len(jobs)} runs")
        return 0
    if args.emit:
        text = emit(jobs)
        if args.emit == "-":
            sys.stdout.write(text)
        else:
            Path(args.emit).write_text(text)
            print(f"wrote {text.count(chr(10))} commands to {args.emit}")
        return 0
    return 1 if run_jobs(jobs, args.workers) else 0


def cmd_report(args) -> int:
    from she_bench.ablate import load_report_plan
    from she_bench.report import build_report
    from she_bench.report.collect import NothingToReport

    baseline, primary = load_report_plan(Path(args.suite)) if args.suite else ("grpo", [])
    baseline = args.baseline or baseline
    command = ["she-bench", "report", *args.run_dirs, "--out", args.out]
    command += ["--suite", args.suite] if args.suite else []
    command += ["--baseline", args.baseline] if args.baseline else []
    command += ["--bootstrap", str(args.bootstrap)] if args.bootstrap != 10_000 else []
    try:
        result = build_report([Path(p) for p in args.run_dirs], Path(args.out), baseline=baseline,
                              n_boot=args.bootstrap, command=command, primary=primary)
    except NothingToReport as e:
        _print_skipped([{"path": s.rel, "reason": s.reason} for s in e.skipped])
        raise
    _print_skipped(result["skipped"])
    print(f"report: {Path(args.out) / 'index.html'} ({len(result.get('files', []))} files)")
    return 0


def _print_skipped(skipped: list[dict]) -> None:
    for s in skipped:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)


def _print_summary(path: Path, metrics: dict) -> None:
    o = metrics["overall"]
    print(f"run: {path}")
    print(f"n={o['n']} accuracy={o['accuracy']['value']:.3f} {o['accuracy']['ci95']} "
          f"macro_f1={o['macro_f1']['value']:.3f} "
          f"good_f1={o['good_f1']['value']:.3f} format_valid={o['format_valid_rate']:.3f}")
    for name, m in metrics["slices"].items():
        print(f"  {name:22s} n={m['n']:5d} acc={m['accuracy']['value']:.3f} macro_f1={m['macro_f1']['value']:.3f}")
    print("step accuracy: " + ", ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a"
                                        for k, v in o["step_accuracy"].items()))


def cmd_data(args) -> int:
    from she_bench.data.cards import list_benchmarks, load_benchmark
    from she_bench.data.describe import describe, format_card, format_ceilings

    if args.data_command == "list":
        print("\n".join(list_benchmarks()))
        return 0
    from she_bench.config import parse_overrides
    from she_bench.evaluation.ceilings import ceilings

    bench = load_benchmark(args.name, args.data_dir, parse_overrides(args.overrides))
    card = describe(bench)
    card["ceilings"] = {split: ceilings(bench.splits["train"], exs, bench.labels, bench.card.slices)
                        for split, exs in bench.splits.items() if split != "train" and exs}
    print(json.dumps(card, indent=2) if args.json else format_card(card) + "\n" + format_ceilings(card["ceilings"]))
    return 0




def cmd_claims(args) -> int:
    from she_bench.config import ConfigError
    from she_bench.report import evidence
    from she_bench.report.claims import BOOTSTRAP, RunIndex, build_claims
    from she_bench.report.claims_pages import write_claims

    if args.bootstrap is not None and args.bootstrap < 1:
        raise ConfigError(f"--bootstrap: expected a number >= 1, got {args.bootstrap}")
    n_boot = BOOTSTRAP if args.bootstrap is None else args.bootstrap
    ev_path = Path(args.out) / evidence.FILENAME
    kept = evidence.load(ev_path) if ev_path.is_file() else {}
    index = RunIndex(Path(args.runs), args.profile, kept)
    results = build_claims([Path(p) for p in args.experiments], index, n_boot)
    command = shlex.join(["she-bench", "claims", "--experiments", *args.experiments, "--runs", args.runs, "--out",
                          args.out] + (["--bootstrap", str(n_boot)] if n_boot != BOOTSTRAP else [])
                         + (["--profile", args.profile] if args.profile else []))
    write_claims(results, Path(args.out), command, index.refused)
    evidence.write(index.evidence, ev_path)  # every line kept, those of accepted folders replaced
    for r in index.refused:
        print(f"not merged: {r['rel']}: build {r['folder_build']} against the evidence's {r['line_build']} "
              f"({r['reason']})", file=sys.stderr)
    for r in results:
        print(f"{r['name']}: {r.get('verdict', 'A/A')} ({r['runs_done']} of {r['runs_declared']} runs done)")
    folders, lines = index.sources()
    print(f"{folders + lines} runs analysed: {folders} from their folders under {args.runs}, {lines} from {ev_path}")
    print(f"claims written to {args.out}")
    return 0


COMMANDS = {"eval": cmd_eval, "run": cmd_run, "ablate": cmd_ablate, "report": cmd_report, "claims": cmd_claims,
            "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    from she_bench.config import ConfigError
    from she_bench.data.schema import DataError
    from she_bench.registry import UnknownName
    from she_bench.report.collect import NothingToReport

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = ["she-bench", *argv]
    from she_bench import console

    console.configure(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except (DataError, ConfigError, NothingToReport, FileNotFoundError, UnknownName) as e:
        print(f"she-bench: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    finally:
        from she_bench.runs import leave_process_group

        leave_process_group()


if __name__ == "__main__":
    sys.exit(main())
