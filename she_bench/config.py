"""One typed config for every command and method, loaded from YAML recipes and overrides.

Recipes (YAML) live in `baselines/`; a recipe may `inherit` another recipe and override a
few fields, which is how ablation variants are declared. Command-line `key=value`
overrides use dotted names (`rl.group_size=8`). Unknown keys are errors, and so is a value a
field does not accept: each ranged field declares its rule beside it (`accepts(rule, default)`),
rules that join fields are in CROSS_RULES, and rules that need the benchmark card in CARD_RULES
(checked by `check_card` once the card is loaded).
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
from typing import Any, Callable

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[1] / "baselines"
# A decimal number as users type it. PyYAML follows YAML 1.1, which reads 1e-3, 5E-5 and 1.0e5
# (no dot, or no exponent sign) as strings; a float field takes them as numbers.
FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

STEP_NAMES = ("query_understanding", "item_understanding", "category_matching", "attribute_matching",
              "relevance_judgment")
"""The five reasoning steps (she_bench.data.schema.STEPS), named here so the config imports nothing of the package."""
FORMAT_MODES = ("gate", "penalty", "off")
MIXING_MODES = ("verifier_first", "weighted", "verifier_only", "grm_only")
GRM_KINDS = ("oracle", "generative", "judge")
STAGE_METHODS = ("sft", "sft-matched", "dpo", "grpo", "srpo")


@dataclass(frozen=True)
class Rule:
    """What a field accepts: `text` says it (the error names it), `ok` checks a value (None passes where the
    type allows None)."""

    text: str
    ok: Callable[[Any], bool]


def at_least(low) -> Rule:
    return Rule(f">= {low}", lambda v: v >= low)


def above(low) -> Rule:
    return Rule(f"> {low}", lambda v: v > low)


def within(low: float, high: float, low_open: bool = False) -> Rule:
    """[low, high], or (low, high] with low_open."""
    return Rule(f"a number in {'(' if low_open else '['}{low}, {high}]",
                lambda v: (low < v if low_open else low <= v) and v <= high)


def one_of(*names: str) -> Rule:
    return Rule("one of " + ", ".join(names), lambda v: v in names)


def names_from(names: tuple[str, ...]) -> Rule:
    return Rule("a list of names from " + ", ".join(names), lambda v: all(x in names for x in v))


BAND = Rule("[low, high] with 0 <= low <= high <= 1", lambda v: len(v) == 2 and 0 <= v[0] <= v[1] <= 1)
NON_EMPTY = Rule("a non-empty list", lambda v: len(v) > 0)
TWO_ANSWERS = Rule("two distinct non-empty strings", lambda v: len(v) == 2 and all(v) and v[0] != v[1])


def accepts(rule: Rule, default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING):
    """A dataclass field whose values must pass `rule` (checked by `validate`)."""
    return field(default=default, default_factory=default_factory, metadata={"rule": rule})


@dataclass
class EvalConfig:
    split: str = "test"
    """Which split to evaluate: one of the benchmark's splits that holds examples."""
    limit: int | None = accepts(at_least(1), None)
    """Evaluate only the first N (>= 1) examples of the split (None: all)."""
    batch_size: int = accepts(at_least(1), 64)
    """Prompts per generation batch (>= 1)."""
    save_every: int = accepts(at_least(1), 256)
    """Predictions are appended to predictions.jsonl every N (>= 1) examples: what a killed evaluation keeps."""
    max_new_tokens: int = accepts(at_least(1), 96)
    """Generation budget per example (>= 1); a five-step toyshop rationale is about 60 tokens."""
    bootstrap: int = accepts(at_least(1), 1000)
    """Bootstrap resamples (over queries, >= 1) for the 95% intervals."""
    samples: int = accepts(at_least(0), 0)
    """Besides the greedy answer, sample this many (>= 0) outputs per prompt at `eval.temperature` and report their mean
    accuracy (`metrics.json` "sampled"): RL can sharpen the sampling distribution without moving the greedy answer."""
    temperature: float | None = accepts(above(0), None)
    """Sampling temperature (> 0) for `eval.samples` (None: rl.temperature, the training temperature)."""
    conditioning: bool = True
    """Teacher-forced AUC of each verdict against the gold (evaluation/conditioning.py): does the policy's verdict
    depend on the input? Each evaluated pair's gold prefix is read once, each candidate verdict continues it."""
    subset: int | None = accepts(at_least(1), None)
    """Evaluate a fixed, query-stratified subset of at least this many (>= 1) pairs of the split (every query keeps
    the same share of its pairs, rounded up; the same subset for every run and seed). None: the whole split."""
    samples_subset: int | None = accepts(at_least(1), None)
    """Draw the `eval.samples` outputs on a fixed query-stratified subset of at least this many (>= 1) of the evaluated
    pairs (the greedy metrics keep every pair); metrics.json "sampled" records its size. None: every evaluated pair."""
    decisions: bool = True
    """Read the greedy outputs once more, teacher-forced (evaluation/decisions.py): the entropy at each decision token
    (verdicts, label), of the top 20% highest-entropy tokens, and against the warm start the KL and the share of
    labels changed (`metrics.json` "decisions")."""


@dataclass
class PromptConfig:
    """How a (query, product) pair is shown to the model."""

    style: str = accepts(one_of("steps", "label"), "steps")
    """steps: reason in the five steps, then 'Label: X' (every training method); label: answer 'Label: X' only
    (evaluation of untrained models; format-valid then means the label parses)."""
    shots: int = accepts(at_least(0), 0)
    """Evaluation: worked train examples (>= 0) shown before the pair (one per label in turn, chosen by the seed)."""
    item_fields: list[str] | None = accepts(NON_EMPTY, None)
    """Product fields shown, in order, each a field the benchmark's items have (None: all the card gives).
    E.g. [title, brand, color, category]."""
    field_chars: int | None = accepts(at_least(1), None)
    """Clip each product field to this many (>= 1) characters (None: as loaded)."""


@dataclass
class WarmStartConfig:
    """SFT on gold rationales; every training method starts from this checkpoint (cached by its hash)."""

    epochs: float = accepts(at_least(0), 60.0)
    """Epochs (>= 0; 0: no warm start, the base model itself) over the pairs that have a rationale. Calibrated on
    toyshop dev (reports/calibration.md): 60 epochs over its default 5% of 20,000 rationales, the optimizer steps
    of 3 epochs over all of them (the pool's chosen cell). Other benchmarks' suites set their own."""
    lr: float = accepts(above(0), 2e-3)
    """Learning rate (> 0). Toy models from scratch need a high rate; use ~2e-4 for pretrained models (with LoRA
    higher)."""
    batch_size: int = accepts(at_least(1), 32)
    """SFT rows per step (>= 1)."""
    max_length: int = accepts(at_least(1), 320)
    """Tokens per SFT row (>= 1), prompt and completion together (also DPO's)."""


@dataclass
class TrainConfig:
    """Shared by every training method."""

    lr: float = accepts(above(0), 2e-5)
    """Learning rate (> 0) of the method after the warm start (RL; DPO's recipe sets its own); calibrated on toyshop
    dev (reports/calibration.md, section rl)."""
    max_steps: int = accepts(at_least(1), 50)
    """Optimizer steps (>= 1) of the method after the warm start (the RL budget); calibrated on dev
    (reports/calibration.md)."""
    prompts_per_step: int = accepts(at_least(1), 8)
    """Prompts per optimizer step (>= 1); RL methods sample rl.group_size completions for each."""
    save_steps: int = accepts(at_least(1), 20)
    """Checkpoint every N (>= 1) steps; a killed run resumes from the last one."""
    keep_checkpoints: int | None = accepts(at_least(1), 2)
    """Checkpoints kept on disk (>= 1, the newest); None keeps every one (calibration reads intermediate ones)."""
    report_to: str = accepts(one_of("none", "tensorboard"), "none")
    """Live training curves: none, or tensorboard (TRL's `report_to`; event files in the run directory's
    tensorboard/<stage>/; needs the `tensorboard` extra). train_log.jsonl is written either way."""
    lora: bool = False
    """Train a LoRA adapter (PEFT) instead of all weights."""
    lora_r: int = accepts(at_least(1), 16)
    """LoRA rank (>= 1)."""
    lora_alpha: int = accepts(at_least(1), 32)
    """LoRA scaling numerator (>= 1)."""
    lora_dropout: float = accepts(Rule("a number in [0, 1)", lambda v: 0 <= v < 1), 0.0)
    """Dropout on the LoRA path, in [0, 1)."""
    lora_target: str = "all-linear"
    """PEFT's target_modules: all-linear, or a module name pattern."""
    sft_epochs: float = accepts(above(0), 1.0)
    """SFT baseline: extra epochs (> 0) of SFT on gold rationales from the warm start."""
    dpo_beta: float = accepts(above(0), 0.1)
    """DPO: the preference loss's beta (> 0)."""
    dpo_samples: int = accepts(at_least(1), 4)
    """DPO: completions sampled (>= 1) per train prompt from the warm start to build preference pairs."""
    dpo_max_pairs: int = accepts(at_least(1), 320)
    """DPO: pairs kept (>= 1; one per prompt at most), so its budget is comparable to the RL runs."""
    rft_samples: int = accepts(at_least(1), 4)
    """RFT: completions sampled (>= 1) per RL prompt from the warm start; the format-valid ones with the gold label are
    its SFT targets."""
    sft_targets: str = accepts(one_of("card", "oracle"), "card")
    """sft-matched's targets: card (the rationales the card releases, noise included), or oracle (the clean gold chain
    of every RL prompt, whatever the card withholds or corrupts): the claim experiments' positive control, never a
    method to compare."""


@dataclass
class RLConfig:
    """GRPO and SRPO (TRL GRPOTrainer); defaults follow the sibling paper where it gives them."""

    group_size: int = accepts(at_least(2), 8)
    """Rollouts per prompt (>= 2: a group advantage needs two to compare)."""
    max_completion_length: int = accepts(at_least(1), 80)
    """Tokens per rollout (>= 1)."""
    temperature: float = accepts(above(0), 1.0)
    """Rollout sampling temperature (> 0)."""
    beta: float = accepts(at_least(0), 0.02)
    """KL coefficient (>= 0) against the warm start."""
    epsilon: float = accepts(above(0), 0.2)
    """PPO-style clip range (> 0)."""
    loss_type: str = accepts(one_of("grpo", "bnpo", "dr_grpo", "dapo"), "dapo")
    """TRL loss aggregation: grpo, bnpo, dr_grpo or dapo."""
    scale_rewards: str = accepts(one_of("group", "batch", "none"), "group")
    """TRL's reward scaling: group, batch or none."""
    advantage_clip: float | None = accepts(above(0), 2.0)
    """Clamp the outcome advantage to +-this (> 0; GRPO and SRPO alike), None to disable. SRPO's step term is
    bounded by the same value separately, so a clamped outcome advantage cannot erase it."""
    tail_weight: float = accepts(at_least(1), 1.0)
    """Sampling weight (>= 1) of tail training prompts relative to head ones: each tail prompt is repeated this
    many times, rounded."""
    min_group_std: float = accepts(at_least(0), 0.0)
    """Online filter (>= 0): a group whose outcome-reward std is below this leaves the batch: zero advantage and no
    tokens in the loss normaliser (dapo, bnpo); counted in the log."""
    seed: int | None = accepts(at_least(0), None)
    """Seed (>= 0) of everything after the warm start: the RL prompts' order, rollout sampling, the Trainer, the
    oracle GRM's flips, the offline filter's and the shuffled control's draws (None: the run's `seed`). The warm start
    (and the GRM trained on it) follow `seed`, so several RL runs with different `rl.seed` start from one warm start:
    an A/A test on one build."""
    use_vllm: bool = False
    """GPU only: GRPO/SRPO rollouts through TRL's vLLM support (the `vllm` extra)."""
    vllm_mode: str = accepts(one_of("colocate", "server"), "colocate")
    """colocate (vLLM inside the training processes) or server (`trl vllm-serve --model <warm start>`)."""
    vllm_gpu_memory_utilization: float = accepts(within(0, 1, low_open=True), 0.3)
    """colocate: share of each GPU's memory given to vLLM, in (0, 1]."""
    vllm_server_base_url: str | None = None
    """server: e.g. http://localhost:8000 (None: TRL's default host and port)."""


@dataclass
class RewardConfig:
    """Outcome and step rewards (SRPO's hybrid of the offline verifier and a generative stepwise RM)."""

    ordinal_credit: float = accepts(within(0, 1), 0.0)
    """Outcome reward for a label one grade off, in [0, 1] (0: exact label only)."""
    format: str = accepts(one_of(*FORMAT_MODES), "gate")
    """gate: outcome reward 0 unless all five steps are present and non-empty, the label parses and the
    judgment step names the same label; penalty: reward.format_penalty subtracted from a malformed output;
    off: the label alone decides (gameable: a policy may drop its reasoning and keep the reward)."""
    format_penalty: float = accepts(at_least(0), 0.5)
    """penalty mode: subtracted (>= 0) from the outcome reward of a malformed output."""
    class_weights: str = accepts(one_of("none", "balanced"), "none")
    """none, or balanced: each rollout's advantage is multiplied by N / (classes x N_gold-class) over the RL
    prompts, so rare labels weigh as much as common ones (applied to the advantage, not the reward, so
    group scaling cannot divide it out)."""
    grm: str = accepts(one_of(*GRM_KINDS), "oracle")
    """Generative stepwise reward model: oracle, generative or judge."""
    grm_error_rate: float = accepts(within(0, 1), 0.1)
    """oracle GRM: probability, in [0, 1], of flipping each ground-truth verdict."""
    grm_model: str | None = None
    """judge GRM: the model that judges (None: the warm start); generative GRM: a trained GRM folder (None: train one
    from the warm start)."""
    grm_answers: list[str] | None = accepts(TWO_ANSWERS, None)
    """The GRM's two answers, "step right" then "step wrong"; each must be one token of the GRM's tokenizer
    (None: " +" and " -" for generative, " yes" and " no" for judge)."""
    grm_epochs: float = accepts(above(0), 2.0)
    """generative GRM: epochs (> 0) of its SFT."""
    grm_rollouts: int = accepts(at_least(1), 2)
    """generative GRM: sampled rollouts (>= 1) per train prompt that the verifier labels for its training."""
    grm_prompts: int = accepts(at_least(1), 600)
    """generative GRM: train prompts (>= 1, a seeded sample) whose rollouts make its training data."""
    grm_min_auroc: float = accepts(within(0, 1), 0.7)
    """generative GRM trained here: a run stops, in one line, when the GRM's held-out AUROC on a step it scores
    in this run is below this (in [0, 1]; 0 runs with any GRM). Steps with too few wrong examples to measure are
    not held against it."""
    mixing: str = accepts(one_of(*MIXING_MODES), "verifier_first")
    """verifier_first, weighted, verifier_only or grm_only."""
    mix_weight: float = accepts(within(0, 1), 0.5)
    """weighted mixing: weight, in [0, 1], of the verifier where both score a step."""
    verifier_steps: list[str] | None = accepts(names_from(STEP_NAMES), None)
    """Steps the verifier may score, each one the card annotates (None: every step the card annotates)."""
    judgment_step_reward: bool = False
    """Also give the relevance-judgment step a step reward. Off by default: the outcome reward (and the format
    gate, which makes the judgment name the final label) already pays for it."""
    step_weight: float = accepts(at_least(0), 0.5)
    """lambda (>= 0): weight of the step advantage added to the outcome advantage (0 reproduces GRPO)."""
    step_min_std: float = accepts(at_least(0), 0.1)
    """A step whose rewards spread (std within the group) less than this (>= 0) carries no signal: near-identical
    continuous GRM scores are not blown up into unit-size advantages. It cannot act on 0/1 rewards (the
    verifier, the oracle GRM): the smallest non-zero std of G binary values is that of one odd value out,
    0.354 for G = 8, above any useful threshold."""
    critical_weight: float = accepts(at_least(0), 2.0)
    """w_crit (>= 0): weight of critical steps (first wrong step of a wrong rollout, a right step where most erred)."""
    scalar: bool = False
    """Ablation: give the mean step score as one sequence-level reward instead of per-step advantages."""
    shuffle_step_rewards: bool = False
    """Negative control (srpo-shuffled): permute the step-reward rows within each group, seeded, so the step term
    keeps its variance and loses its information; it must come out equivalent to GRPO."""


@dataclass
class FilterConfig:
    """Diversified data filtering before RL, from N rollouts of the warm start per prompt."""

    enabled: bool = False
    rollouts: int = accepts(at_least(1), 8)
    """Rollouts per prompt (>= 1) to estimate its pass rate and its distinct reasoning paths (with fewer than 8 a
    pass band of [0.01, 0.9] cannot tell a 1-in-8 prompt from an always-wrong one)."""
    max_prompts: int = accepts(at_least(1), 600)
    """Prompts scored (>= 1, a seeded sample of the train split) before filtering, with `scoring` fixed."""
    scoring: str = accepts(one_of("fixed", "budget"), "fixed")
    """How many prompts the filter scores: fixed (`max_prompts`), or budget: as many as it takes to keep the RL
    budget's distinct prompts (train.max_steps x train.prompts_per_step, what GRPO sees), min(pool, budget / keep
    rate), scored in rounds whose size follows the keep rate measured so far. Its rollouts count in the run's budget
    (tokens generated) either way."""
    pass_band: list[float] = accepts(BAND, default_factory=lambda: [0.01, 0.9])
    """Keep prompts whose pass rate lies in [low, high] (0 <= low <= high <= 1): drops the always-right and
    always-wrong ones."""
    stratum: str = accepts(one_of("label", "category", "query_type"), "label")
    """What keeps the kept set diverse: label, category or query_type."""
    stratum_cap: float = accepts(within(0, 1, low_open=True), 0.4)
    """No stratum may exceed this share, in (0, 1], of the final kept set. With fewer non-empty strata than 1/cap the
    cap cannot hold; it becomes 1/strata (equal shares at most), recorded in filter_report.json."""
    prefer_diverse: bool = True
    """Within a stratum, keep prompts with more distinct step-verdict patterns first."""


@dataclass
class StageConfig:
    """One curriculum stage: a method on a subset of the (filtered) prompts."""

    name: str = accepts(Rule("a non-empty name without '/'", lambda v: bool(v) and "/" not in v), "rl")
    """Names the stage in the log and its checkpoint folder."""
    method: str = accepts(one_of(*STAGE_METHODS), "srpo")
    """The training method of the stage: sft, sft-matched, dpo, grpo or srpo."""
    share: float = accepts(within(0, 1, low_open=True), 1.0)
    """Share, in (0, 1], of train.max_steps this stage gets; the stages' shares sum to 1."""
    slices: list[str] | None = None
    """Keep prompts in any of these slices of the card (e.g. [head]); None: all."""
    pass_band: list[float] | None = accepts(BAND, None)
    """Keep prompts whose estimated pass rate is in [low, high] (0 <= low <= high <= 1; needs filter.enabled,
    whose rollouts estimate it)."""


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
    """toy-1m, toy-5m, toy-20m, toy-1m-catalogue (a pretrained toy base), smollm2-135m, or a local model folder."""
    seed: int = accepts(at_least(0), 0)
    """Seeds every random draw of the run (>= 0)."""
    engine: str = accepts(one_of("transformers", "vllm"), "transformers")
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

    @property
    def rl_seed(self) -> int:
        """The seed of everything after the warm start (rl.seed, else the run's seed)."""
        return self.seed if self.rl.seed is None else self.rl.seed

    def hash(self) -> str:
        """Identifies a run: every field except where its outputs go and how rollouts are
        executed (like the device or the number of processes, those are recorded in the manifest)."""
        d = self.to_dict()
        d.pop("output_dir")
        # options added after runs existed leave a run's identity unchanged at their defaults
        if d["prompt"] == dataclasses.asdict(PromptConfig()):
            d.pop("prompt")
        for section, key, default in (("eval", "subset", None), ("eval", "conditioning", True),
                                      ("eval", "decisions", True),
                                      ("filter", "scoring", "fixed"),
                                      ("eval", "samples_subset", None), ("reward", "grm_min_auroc", 0.7),
                                      ("reward", "shuffle_step_rewards", False), ("train", "rft_samples", 4),
                                      ("train", "sft_targets", "card")):
            if d[section][key] == default:
                d[section].pop(key)
        if not d["card"]:
            d.pop("card")
        for key in [k for k in d["rl"] if k.endswith("vllm") or k.startswith("vllm_")]:
            d["rl"].pop(key)
        if d["rl"]["seed"] is None:
            d["rl"].pop("seed")
        d["train"].pop("report_to")  # where curves are shown, not what is trained
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


class ConfigError(ValueError):
    pass


RL_ONLY_CARD_KEYS = ("annotation_share",)
"""Card options that decide what RL knows of its prompts, never the warm start's rows (methods/sft.warm_start_dir)."""


def warm_start_identity(cfg: dict) -> str:
    """What decides a run's warm start, from its config as a mapping (Config.to_dict(), or a run's config.yaml):
    benchmark, data folder, card options but those RL alone reads, model, seed, the warm-start, prompt and LoRA
    settings. Runs with one identity start from one cached warm start; their pairs are compared on one build."""
    card = {k: v for k, v in (cfg.get("card") or {}).items() if k not in RL_ONLY_CARD_KEYS}
    train = cfg.get("train") or {}
    lora = train.get("lora") and [train.get(k) for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target")]
    prompt = cfg.get("prompt") or {}
    return json.dumps([cfg.get("benchmark"), cfg.get("data_dir"), card, cfg.get("model"), cfg.get("seed"),
                       cfg.get("warm_start"), prompt if prompt != dataclasses.asdict(PromptConfig()) else None, lora],
                      sort_keys=True, default=str)


def _refuse(where: str, accepted: str, value) -> ConfigError:
    return ConfigError(f"{where}: expected {accepted}, got {value!r}")


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


CROSS_RULES: tuple[tuple[str, str, Callable[[Config], Any], Callable[[Any], bool]], ...] = (
    # (field, what it accepts, its value in a config, the check)
    ("curriculum", "stage shares that sum to 1", lambda c: [s.share for s in c.curriculum],
     lambda shares: not shares or abs(sum(shares) - 1) <= 1e-6),
    ("curriculum.pass_band", "no stage pass band unless filter.enabled (the filter's rollouts give the pass rates)",
     lambda c: [s.pass_band for s in c.curriculum if s.pass_band is not None] if not c.filter.enabled else [],
     lambda bands: not bands),
    ("train.report_to", "tensorboard only with the tensorboard package installed "
     "(pip install -c constraints.txt -e '.[tensorboard]')", lambda c: c.train.report_to,
     lambda v: v != "tensorboard" or _tensorboard_installed()),
)
"""Rules that join fields (or the environment), checked after each field's own rule."""


def _item_fields(bench) -> set[str]:
    return {k for exs in bench.splits.values() for ex in exs for k in ex.item}


CARD_RULES: tuple[tuple[str, Callable[[Any], str], Callable[[Config], Any], Callable[[Any, Any], bool]], ...] = (
    # (field, what it accepts given the benchmark, its value in a config, the check given the benchmark)
    ("eval.split",
     lambda b: f"a split of {b.name} that holds examples ({', '.join(k for k, v in b.splits.items() if v)})",
     lambda c: c.eval.split, lambda v, b: bool(b.splits.get(v))),
    ("reward.verifier_steps", lambda b: f"steps that {b.name} annotates ({', '.join(b.card.annotated_steps)})",
     lambda c: c.reward.verifier_steps, lambda v, b: v is None or set(v) <= set(b.card.annotated_steps)),
    ("reward.verifier_steps", lambda b: f"null while the card's annotation_share ({b.card.annotation_share:g}) < 1: "
     "the knob, not a recipe's fixed list, decides which steps the verifier knows",
     lambda c: c.reward.verifier_steps, lambda v, b: v is None or b.card.annotation_share >= 1),
    ("curriculum.slices", lambda b: f"slices of {b.name} ({', '.join(b.card.slices)})",
     lambda c: [x for stage in c.curriculum for x in stage.slices or []], lambda v, b: set(v) <= set(b.card.slices)),
    ("prompt.item_fields", lambda b: f"product fields of {b.name} ({', '.join(sorted(_item_fields(b)))})",
     lambda c: c.prompt.item_fields, lambda v, b: v is None or set(v) <= _item_fields(b)),
)
"""Rules that need the benchmark (its card and examples), checked by `check_card` once it is loaded."""


def _check_fields(obj, where: str) -> None:
    for f in dataclasses.fields(obj):
        value, at = getattr(obj, f.name), f"{where}.{f.name}"
        rule = f.metadata.get("rule")
        if rule is not None and value is not None and not rule.ok(value):
            raise _refuse(at, rule.text, value)
        if dataclasses.is_dataclass(value):
            _check_fields(value, at)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _check_fields(item, f"{at}[{i}]")


def validate(cfg: Config, where: str = "config") -> Config:
    """Refuse a value outside what its field accepts (ConfigError naming the field), before anything is built."""
    _check_fields(cfg, where)
    for name, accepted, value_of, ok in CROSS_RULES:
        value = value_of(cfg)
        if not ok(value):
            raise _refuse(f"{where}.{name}", accepted, value)
    return cfg


def check_card(cfg: Config, bench) -> None:
    """The rules that need the loaded benchmark (CARD_RULES)."""
    for name, accepted, value_of, ok in CARD_RULES:
        value = value_of(cfg)
        if not ok(value, bench):
            raise _refuse(name, accepted(bench), value)


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
        try:
            flat[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return nest(flat)


def make_config(recipe: str | None = None, overrides: dict | None = None) -> Config:
    data = read_recipe(recipe) if recipe else {}
    data = _merge(data, overrides or {})
    cfg = _build(Config, data, recipe or "config")
    if not cfg.name:
        cfg.name = find_recipe(recipe).stem if recipe else cfg.method
    return validate(cfg, recipe or "config")

