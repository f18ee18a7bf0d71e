"""The `she-bench` command line: the one module that knows every other."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", help="benchmark card name or path (default toyshop)")
    p.add_argument("--data-dir", help="data folder, overriding the card's")
    p.add_argument("--model", help="toy-1m, toy-5m, toy-20m, smollm2-135m or a local model folder")
    p.add_argument("--seed", type=int)
    p.add_argument("--engine", choices=["transformers", "vllm"])
    p.add_argument("--output-dir", help="where run directories go (default runs/)")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value (dotted keys, e.g. eval.limit=50)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="she-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate a model on a benchmark split into a run directory")
    _common(ev)
    ev.add_argument("--split")
    ev.add_argument("--limit", type=int)

    run = sub.add_parser("run", help="train with a method from the shared warm start, then evaluate")
    run.add_argument("--method", default="srpo", help="a recipe name under baselines/ (sft, dpo, grpo, srpo, ...) or a YAML path")
    _common(run)

    ab = sub.add_parser("ablate", help="run a suite of methods x variants x benchmarks x seeds")
    ab.add_argument("--suite", required=True, help="suite YAML (e.g. benchmarks/suites/toyshop.yaml)")
    ab.add_argument("--workers", type=int, default=1, help="runs in parallel on this machine")
    ab.add_argument("--output-dir", help="overrides the suite's output_dir")
    ab.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    ab.add_argument("--emit", metavar="FILE", help="write the unfinished runs as commands, one per line ('-' for stdout)")

    rep = sub.add_parser("report", help="tables, plots and an HTML page across run directories")
    rep.add_argument("run_dirs", nargs="+", help="run directories, or folders searched for them")
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument("--baseline", default="grpo", help="variant the others are compared with (default grpo)")
    rep.add_argument("--bootstrap", type=int, default=1000, help="resamples of the paired test")

    data = sub.add_parser("data", help="inspect benchmarks")
    dsub = data.add_subparsers(dest="data_command", required=True)
    desc = dsub.add_parser("describe", help="print a data card: counts per split, label and slice")
    desc.add_argument("name")
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


def toy_corpus(bench) -> list[str]:
    """Text a toy tokenizer is trained on: the train split's prompts and gold rationales."""
    from she_bench.reasoning.template import gold_rationale, render_prompt

    return [render_prompt(ex, bench.labels) + gold_rationale(ex) for ex in bench.splits["train"]]


def _open_run(cfg):
    """(benchmark, run, model folder) for a run still to do; None (after printing its summary)
    when the run is already done."""
    from she_bench.data.cards import load_benchmark
    from she_bench.models import resolve_model
    from she_bench.runs import Run

    bench = load_benchmark(cfg.benchmark, cfg.data_dir)
    run = Run(cfg, bench.name)
    if run.is_done():
        print(f"already done: {run.path}")
        _print_summary(run.path, json.loads((run.path / "metrics.json").read_text()))
        return None
    return bench, run, resolve_model(cfg.model, toy_corpus(bench), cfg.seed)


def cmd_eval(args) -> int:
    from she_bench.evaluation.evaluate import evaluate
    from she_bench.models import model_hash

    cfg = config_from_args(args, "eval")
    opened = _open_run(cfg)
    if opened is None:
        return 0
    bench, run, model_path = opened
    run.start(data_hash=bench.data_hash(), model_path=str(model_path), model_hash=model_hash(model_path),
              engine=cfg.engine, device=_device(), command=args.argv)
    t0 = time.time()
    metrics = evaluate(run, bench, model_path)
    run.update(eval_seconds=round(time.time() - t0, 2))
    run.finish()
    _print_summary(run.path, metrics)
    return 0


def cmd_run(args) -> int:
    from she_bench.evaluation.entropy import training_entropy
    from she_bench.evaluation.evaluate import evaluate
    from she_bench.evaluation.grm_quality import grm_agreement
    from she_bench.methods import get_method
    from she_bench.methods.srpo import build_grm, uses_grm
    from she_bench.rewards.grm import grm_label
    from she_bench.methods.common import Context, process_state
    from she_bench.methods.sft import warm_start
    from she_bench.models import model_hash
    from she_bench.runs import is_main_process, read_jsonl, write_json

    cfg = config_from_args(args, args.method, recipe=args.method)
    process_state()  # joins the process group when launched data-parallel
    train = get_method(cfg.method)
    opened = _open_run(cfg)
    if opened is None:
        return 0
    bench, run, base = opened
    run.start(data_hash=bench.data_hash(), base_model=str(base), base_model_hash=model_hash(base),
              engine=cfg.engine, device=_device(), command=args.argv)
    ctx = Context(cfg=cfg, bench=bench, run=run, base_model=base)
    t0 = time.time()
    init = ctx.warm_start = warm_start(ctx)
    run.update(warm_start=str(init), warm_start_hash=model_hash(init), warm_start_seconds=round(time.time() - t0, 1))
    t1 = time.time()
    final = train(ctx, init)
    if not is_main_process():  # data-parallel replicas only train; rank 0 evaluates
        return 0
    run.update(final_model=str(final), final_model_hash=model_hash(final), train_seconds=round(time.time() - t1, 1))
    t2 = time.time()
    metrics = evaluate(run, bench, final)
    metrics["training_entropy"] = training_entropy(read_jsonl(run.path / "train_log.jsonl"))
    if uses_grm(cfg):  # how well the run's GRM judged the final policy's own test outputs
        r = cfg.reward
        grm = build_grm(ctx, init, seed_offset=1)
        examples = {ex.id: ex for ex in bench.splits[cfg.eval.split]}
        metrics["grm_agreement"] = grm_agreement(grm, examples, read_jsonl(run.path / "predictions.jsonl"),
                                                 bench.labels, grm_label(r.grm, r.grm_error_rate, r.grm_model))
        metrics["overall"]["step_accuracy_grm"] = metrics["grm_agreement"]["step_accuracy_grm"]
    write_json(run.path / "metrics.json", metrics)
    run.update(eval_seconds=round(time.time() - t2, 1), total_seconds=round(time.time() - t0, 1))
    run.finish()
    _print_summary(run.path, metrics)
    return 0


def cmd_ablate(args) -> int:
    from she_bench.ablate import emit, load_suite, run_jobs

    jobs = load_suite(Path(args.suite), args.output_dir)
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
    from she_bench.report import build_report

    command = ["she-bench", "report", *args.run_dirs, "--out", args.out]
    if args.baseline != "grpo":
        command += ["--baseline", args.baseline]
    result = build_report([Path(p) for p in args.run_dirs], Path(args.out), baseline=args.baseline,
                          n_boot=args.bootstrap, command=command)
    print(f"report: {Path(args.out) / 'index.html'} ({len(result.get('files', []))} files)")
    return 0


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _print_summary(path: Path, metrics: dict) -> None:
    o = metrics["overall"]
    print(f"run: {path}")
    print(f"n={o['n']} accuracy={o['accuracy']['value']:.3f} {o['accuracy']['ci95']} macro_f1={o['macro_f1']['value']:.3f} "
          f"good_f1={o['good_f1']['value']:.3f} format_valid={o['format_valid_rate']:.3f}")
    for name, m in metrics["slices"].items():
        print(f"  {name:22s} n={m['n']:5d} acc={m['accuracy']['value']:.3f} macro_f1={m['macro_f1']['value']:.3f}")
    print("step accuracy: " + ", ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in o["step_accuracy"].items()))


def cmd_data(args) -> int:
    from she_bench.data.cards import list_benchmarks, load_benchmark
    from she_bench.data.describe import describe, format_card

    if args.data_command == "list":
        print("\n".join(list_benchmarks()))
        return 0
    card = describe(load_benchmark(args.name, args.data_dir))
    print(json.dumps(card, indent=2) if args.json else format_card(card))
    return 0


COMMANDS = {"eval": cmd_eval, "run": cmd_run, "ablate": cmd_ablate, "report": cmd_report, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    from she_bench.config import ConfigError
    from she_bench.data.schema import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = ["she-bench", *argv]
    try:
        return COMMANDS[args.command](args)
    except (DataError, ConfigError, FileNotFoundError, KeyError) as e:
        print(f"she-bench: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
