"""One typed config for every command and method, loaded from YAML recipes and overrides.

Recipes (YAML) live in `baselines/`; a recipe may `inherit` another recipe and override a
few fields, which is how ablation variants are declared. Command-line `key=value`
overrides use dotted names (`rl.group_size=8`). Unknown keys are errors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[1] / "baselines"
# A decimal number as users type it. PyYAML follows YAML 1.1, which reads 1e-3, 5E-5 and 1.0e5
# (no dot, or no exponent sign) as strings; a float field takes them as numbers.
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class EvalConfig:
    split: str = "test"
    """Which split to evaluate."""
    limit: int | None = None
    """Evaluate only the first N examples of the split (None: all)."""
    batch_size: int = 64
    save_every: int = 256
    """Predictions are appended to predictions.jsonl every N examples: what a killed evaluation keeps."""
    max_new_tokens: int = 96
    """Generation budget per example; a five-step toyshop rationale is about 60 tokens."""
    bootstrap: int = 1000
    """Bootstrap resamples (over queries) for the 95% intervals."""
    samples: int = 0
    """Besides the greedy answer, sample this many outputs per prompt at `eval.temperature` and report their mean
    accuracy (`metrics.json` "sampled"): RL can sharpen the sampling distribution without moving the greedy answer."""
    temperature: float | None = None
    """Sampling temperature for `eval.samples` (None: rl.temperature, the training temperature)."""
    conditioning: bool = True
    """Teacher-forced AUC of each verdict against the gold (evaluation/conditioning.py): does the policy's verdict
    depend on the input? One forward pass per candidate verdict of each evaluated pair."""
    subset: int | None = None
    """Evaluate a fixed, query-stratified subset of at least this many pairs of the split (every query keeps
    the same share of its pairs, rounded up; the same subset for every run and seed). None: the whole split."""


@dataclass
class PromptConfig:
    """How a (query, product) pair is shown to the model."""

    style: str = "steps"
    """steps: reason in the five steps, then 'Label: X' (every training method); label: answer 'Label: X' only
    (evaluation of untrained models; format-valid then means the label parses)."""
    shots: int = 0
    """Evaluation: worked train examples shown before the pair (one per label in turn, chosen by the seed)."""
    item_fields: list[str] | None = None
    """Product fields shown, in order (None: all the card gives). E.g. [title, brand, color, category]."""
    field_chars: int | None = None
    """Clip each product field to this many characters (None: as loaded)."""


@dataclass
class WarmStartConfig:
    """SFT on gold rationales; every training method starts from this checkpoint (cached by its hash)."""

    epochs: float = 6.0
    """Calibrated on dev (reports/calibration.md): the cheapest warm start whose query- and item-understanding
    steps are right at least 0.9 of the time, with the tail still well below its ceiling."""
    lr: float = 2e-3
    """Toy models from scratch need a high rate; use ~2e-4 for pretrained models (with LoRA higher)."""
    batch_size: int = 32
    max_length: int = 320


@dataclass
class TrainConfig:
    """Shared by every training method."""

    lr: float = 5e-5
    """Learning rate of the method after the warm start (RL, DPO); calibrated on dev (reports/calibration.md)."""
    max_steps: int = 150
    """Optimizer steps of the method after the warm start (the RL budget); calibrated on dev (reports/calibration.md)."""
    prompts_per_step: int = 8
    """Prompts per optimizer step; RL methods sample rl.group_size completions for each."""
    save_steps: int = 20
    """Checkpoint every N steps; a killed run resumes from the last one."""
    keep_checkpoints: int | None = 2
    """Checkpoints kept on disk (the newest); None keeps every one (calibration reads intermediate ones)."""
    lora: bool = False
    """Train a LoRA adapter (PEFT) instead of all weights."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target: str = "all-linear"
    sft_epochs: float = 1.0
    """SFT baseline: extra epochs of SFT on gold rationales from the warm start."""
    dpo_beta: float = 0.1
    dpo_samples: int = 4
    """DPO: completions sampled per train prompt from the warm start to build preference pairs."""
    dpo_max_pairs: int = 320
    """DPO: pairs kept (one per prompt at most), so its budget is comparable to the RL runs."""


@dataclass
class RLConfig:
    """GRPO and SRPO (TRL GRPOTrainer); defaults follow the sibling paper where it gives them."""

    group_size: int = 8
    max_completion_length: int = 80
    temperature: float = 1.0
    beta: float = 0.02
    """KL coefficient against the warm start."""
    epsilon: float = 0.2
    """PPO-style clip range."""
    loss_type: str = "dapo"
    """TRL loss aggregation: grpo, bnpo, dr_grpo, dapo."""
    scale_rewards: str = "group"
    advantage_clip: float | None = 2.0
    """Clamp the outcome advantage to +-this (GRPO and SRPO alike), None to disable. SRPO's step term is
    bounded by the same value separately, so a clamped outcome advantage cannot erase it."""
    tail_weight: float = 1.0
    """Sampling weight of tail training prompts relative to head ones."""
    min_group_std: float = 0.0
    """Online filter: a group whose outcome-reward std is below this leaves the batch: zero advantage and no
    tokens in the loss normaliser (dapo, bnpo); counted in the log."""
    use_vllm: bool = False
    """GPU only: GRPO/SRPO rollouts through TRL's vLLM support (the `vllm` extra)."""
    vllm_mode: str = "colocate"
    """colocate (vLLM inside the training processes) or server (`trl vllm-serve --model <warm start>`)."""
    vllm_gpu_memory_utilization: float = 0.3
    """colocate: share of each GPU's memory given to vLLM."""
    vllm_server_base_url: str | None = None
    """server: e.g. http://localhost:8000 (None: TRL's default host and port)."""


@dataclass
class RewardConfig:
    """Outcome and step rewards (SRPO's hybrid of the offline verifier and a generative stepwise RM)."""

    ordinal_credit: float = 0.0
    """Outcome reward for a label one grade off (0: exact label only)."""
    format: str = "gate"
    """gate: outcome reward 0 unless all five steps are present and non-empty, the label parses and the
    judgment step names the same label; penalty: reward.format_penalty subtracted from a malformed output;
    off: the label alone decides (gameable: a policy may drop its reasoning and keep the reward)."""
    format_penalty: float = 0.5
    """penalty mode: subtracted from the outcome reward of a malformed output."""
    class_weights: str = "none"
    """none, or balanced: each rollout's advantage is multiplied by N / (classes x N_gold-class) over the RL
    prompts, so rare labels weigh as much as common ones (applied to the advantage, not the reward, so
    group scaling cannot divide it out)."""
    grm: str = "oracle"
    """Generative stepwise reward model: oracle, generative or judge."""
    grm_error_rate: float = 0.1
    """oracle GRM: probability of flipping each ground-truth verdict."""
    grm_model: str | None = None
    """judge GRM: the model that judges (None: the warm start); generative GRM: a trained GRM folder (None: train one
    from the warm start)."""
    grm_answers: list[str] | None = None
    """The GRM's two answers, "step right" then "step wrong"; each must be one token of the GRM's tokenizer
    (None: " +" and " -" for generative, " yes" and " no" for judge)."""
    grm_epochs: float = 2.0
    grm_rollouts: int = 2
    """generative GRM: sampled rollouts per train prompt that the verifier labels for its training."""
    grm_prompts: int = 600
    """generative GRM: train prompts (a seeded sample) whose rollouts make its training data."""
    mixing: str = "verifier_first"
    """verifier_first, weighted, verifier_only or grm_only."""
    mix_weight: float = 0.5
    """weighted mixing: weight of the verifier where both score a step."""
    verifier_steps: list[str] | None = None
    """Steps the verifier may score (None: every step the card annotates)."""
    judgment_step_reward: bool = False
    """Also give the relevance-judgment step a step reward. Off by default: the outcome reward (and the format
    gate, which makes the judgment name the final label) already pays for it."""
    step_weight: float = 0.5
    """lambda: weight of the step advantage added to the outcome advantage (0 reproduces GRPO)."""
    step_min_std: float = 0.1
    """A step whose rewards spread less than this (std within the group) carries no signal: near-identical
    continuous GRM scores are not blown up into unit-size advantages. It cannot act on 0/1 rewards (the
    verifier, the oracle GRM): the smallest non-zero std of G binary values is that of one odd value out,
    0.354 for G = 8, above any useful threshold."""
    critical_weight: float = 2.0
    """w_crit: weight of critical steps (first wrong step of a wrong rollout, a right step where most erred)."""
    scalar: bool = False
    """Ablation: give the mean step score as one sequence-level reward instead of per-step advantages."""


@dataclass
class FilterConfig:
    """Diversified data filtering before RL, from N rollouts of the warm start per prompt."""

    enabled: bool = False
    rollouts: int = 8
    """Rollouts per prompt to estimate its pass rate and its distinct reasoning paths (with fewer than 8 a
    pass band of [0.01, 0.9] cannot tell a 1-in-8 prompt from an always-wrong one)."""
    max_prompts: int = 600
    """Prompts scored (a seeded sample of the train split) before filtering."""
    pass_band: list[float] = field(default_factory=lambda: [0.01, 0.9])
    """Keep prompts whose pass rate lies in [low, high]: drops the always-right and always-wrong ones."""
    stratum: str = "label"
    """What keeps the kept set diverse: label, category or query_type."""
    stratum_cap: float = 0.4
    """No stratum may exceed this share of the final kept set. With fewer non-empty strata than 1/cap the
    cap cannot hold; it becomes 1/strata (equal shares at most), recorded in filter_report.json."""
    prefer_diverse: bool = True
    """Within a stratum, keep prompts with more distinct step-verdict patterns first."""


@dataclass
class StageConfig:
    """One curriculum stage: a method on a subset of the (filtered) prompts."""

    name: str = "rl"
    method: str = "srpo"
    share: float = 1.0
    """Share of train.max_steps this stage gets."""
    slices: list[str] | None = None
    """Keep prompts in any of these slices (e.g. [head]); None: all."""
    pass_band: list[float] | None = None
    """Keep prompts whose estimated pass rate is in [low, high] (needs the filter's rollouts)."""


@dataclass
class Config:
    name: str = ""
    """Row label in reports and run-directory prefix; defaults to the recipe's name (or the method)."""
    method: str = "eval"
    """What to run: eval, or a training method registered in she_bench.methods."""
    benchmark: str = "toyshop"
    """A benchmark card name under benchmarks/, or a path to a card."""
    card: dict = field(default_factory=dict)
    """Overrides of the benchmark card's keys for this run, validated like the card: card.options.n_train=20000,
    card.rationale_share=0.1 (an `ablate` grid sweeps them like any other key)."""
    data_dir: str | None = None
    """Overrides the card's data folder."""
    model: str = "toy-1m"
    """toy-1m, toy-5m, toy-20m, smollm2-135m, or a local model folder."""
    seed: int = 0
    engine: str = "transformers"
    """Generation engine for evaluation: transformers or vllm."""
    output_dir: str = "runs"
    eval: EvalConfig = field(default_factory=EvalConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    curriculum: list[StageConfig] = field(default_factory=list)
    """Stages run in order, each from the previous one's checkpoint; empty: one stage of `method`."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Identifies a run: every field except where its outputs go and how rollouts are
        executed (like the device or the number of processes, those are recorded in the manifest)."""
        d = self.to_dict()
        d.pop("output_dir")
        # options added after runs existed leave a run's identity unchanged at their defaults
        if d["prompt"] == dataclasses.asdict(PromptConfig()):
            d.pop("prompt")
        for key, default in (("subset", None), ("conditioning", True)):
            if d["eval"][key] == default:
                d["eval"].pop(key)
        if not d["card"]:
            d.pop("card")
        for key in [k for k in d["rl"] if k.endswith("vllm") or k.startswith("vllm_")]:
            d["rl"].pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


class ConfigError(ValueError):
    pass


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(tp, value, where: str):
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)[:1] or (typing.Any,)
        return [_coerce(inner, v, where) for v in value] if inner is not typing.Any else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def find_recipe(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    hits = sorted(RECIPES_DIR.rglob(f"{name_or_path}.yaml"))
    if not hits:
        known = ", ".join(list_recipes())
        raise ConfigError(f"unknown recipe '{name_or_path}' (known: {known}; or pass a YAML path)")
    return hits[0]


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.rglob("*.yaml"))


def read_recipe(name_or_path: str, _seen: tuple = ()) -> dict:
    path = find_recipe(name_or_path)
    if path in _seen:
        raise ConfigError(f"{path}: recipes inherit in a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping")
    parent = data.pop("inherit", None)
    if parent:
        data = _merge(read_recipe(parent, (*_seen, path)), data)
    return data


def nest(flat: dict) -> dict:
    """{"rl.group_size": 8} -> {"rl": {"group_size": 8}}"""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = str(key).strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def parse_overrides(items: list[str]) -> dict:
    """Command-line `key=value` items (values read as YAML) -> a nested override dict."""
    flat = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value")
        key, raw = item.split("=", 1)
        flat[key] = yaml.safe_load(raw) if raw != "" else None
    return nest(flat)


def make_config(recipe: str | None = None, overrides: dict | None = None) -> Config:
    data = read_recipe(recipe) if recipe else {}
    data = _merge(data, overrides or {})
    cfg = _build(Config, data, recipe or "config")
    if not cfg.name:
        cfg.name = find_recipe(recipe).stem if recipe else cfg.method
    return cfg

