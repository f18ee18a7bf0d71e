"""Generative stepwise reward models (GRMs): a score in [0, 1] for each reasoning step.

Kinds, behind one interface `grm.score(examples, parsed) -> [{step: score or None}]`:
- `oracle`: the ground-truth verdicts (toyshop annotates every step) with each verdict
  flipped with probability `error_rate`, to study how GRM quality matters.
- `generative`: a causal LM trained (SFT) on verifier-labelled rollouts to answer "+" or "-"
  after "Check step k:"; its score is P("+") / (P("+") + P("-")).
- `judge`: a local LM prompted with a rubric; its score is P(" yes") / (P(" yes") + P(" no")).
A step the policy did not write gets no score (None). An LM-scored GRM compares the next-token
probabilities of its two answers, so each answer must be one token of its tokenizer, and the
two must differ: construction fails with a clear error otherwise (a shared first token would
give P = 0.5 for every step, a GRM that sees nothing).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from she_bench.config import MIXING_MODES, ConfigError
from she_bench.data.schema import STEP_TITLES, STEPS, Example
from she_bench.reasoning.parser import Parsed
from she_bench.reasoning.template import render_item
from she_bench.registry import Registry
from she_bench.rewards.verifier import verify_steps

GRMS: Registry = Registry("generative reward model")


@GRMS.register("oracle")
class OracleGRM:
    threshold = 0.5  # its scores are 0 or 1

    def __init__(self, labels: list[str], error_rate: float = 0.1, seed: int = 0, **_):
        self.labels, self.error_rate, self.rng = labels, error_rate, random.Random(seed)

    def score(self, examples: list[Example], parsed: list[Parsed]) -> list[dict[str, float | None]]:
        out = []
        for ex, p in zip(examples, parsed):
            verdicts = verify_steps(ex, p, self.labels)
            scores = {}
            for step in STEPS:
                v = verdicts[step] if step in p.steps else None
                if v is not None and self.rng.random() < self.error_rate:
                    v = not v
                scores[step] = None if v is None else float(v)
            out.append(scores)
        return out


def uses_grm(method: str, mixing: str) -> bool:
    """Whether a run's step rewards come (in part) from a GRM."""
    return method in ("srpo", "she") and mixing != "verifier_only"


def grm_label(kind: str, error_rate: float | None = None, model: str | None = None) -> str:
    """How reports name a GRM: 'oracle (error 0.1)', 'generative (trained)', 'judge (warm start)'."""
    if kind == "oracle":
        return "oracle" if error_rate is None else f"oracle (error {error_rate:g})"
    return f"{kind} ({Path(model).name if model else 'trained' if kind == 'generative' else 'warm start'})"


def check_prompt(ex: Example, p: Parsed, step: str) -> str:
    """What the generative GRM reads before answering '+' or '-' for one step."""
    lines = [f"Query: {ex.query}", f"Product: {render_item(ex.item)}"]
    lines += [f"{i}. {STEP_TITLES[s]}: {p.steps[s]}" for i, s in enumerate(STEPS, 1) if s in p.steps]
    return "\n".join(lines) + f"\nCheck step {STEPS.index(step) + 1}:"


def answer_token_ids(tokenizer, answers: tuple[str, str], where: str = "GRM") -> tuple[int, int]:
    """The token ids of the two answers; a ConfigError unless each is one token and they differ."""
    pieces = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    if any(len(p) != 1 for p in pieces) or pieces[0] == pieces[1]:
        shown = ", ".join(f"{a!r} -> {tokenizer.convert_ids_to_tokens(p)}" for a, p in zip(answers, pieces))
        raise ConfigError(f"{where}: its answers must be two distinct single tokens of its tokenizer, got {shown}; "
                          "choose others with reward.grm_answers")
    return pieces[0][0], pieces[1][0]


class _LMScorer:
    """Scores prompts by the probability of one answer token against another."""

    def __init__(self, model_path, answers: tuple[str, str], batch_size: int = 64, where: str = "GRM"):
        from she_bench.models import load_model, load_tokenizer

        self.model_path = model_path
        self.tokenizer = load_tokenizer(model_path)
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer, answers, f"{where} ({model_path})")
        self.model = load_model(model_path).eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.batch_size = batch_size

    @torch.no_grad()
    def prob_yes(self, prompts: list[str]) -> list[float]:
        out = []
        for i in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(prompts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            logits = self.model(**enc).logits[:, -1, :]
            pair = torch.stack([logits[:, self.yes_id], logits[:, self.no_id]], 1).float().softmax(1)
            out.extend(pair[:, 0].tolist())
        return out


def _score_with(scorer: _LMScorer, make_prompt, examples, parsed) -> list[dict[str, float | None]]:
    jobs = [(i, s) for i, p in enumerate(parsed) for s in STEPS if s in p.steps]
    probs = scorer.prob_yes([make_prompt(examples[i], parsed[i], s) for i, s in jobs]) if jobs else []
    out: list[dict[str, float | None]] = [{s: None for s in STEPS} for _ in parsed]
    for (i, s), prob in zip(jobs, probs):
        out[i][s] = prob
    return out


GENERATIVE_ANSWERS = (" +", " -")
JUDGE_ANSWERS = (" yes", " no")


def trained_record(model_path) -> dict | None:
    """What a GRM trained by she-bench was trained on, its threshold and held-out quality (record.json beside
    the model folder; methods/train_grm.py); None for a GRM folder from elsewhere."""
    import json

    path = Path(model_path).parent / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


@GRMS.register("generative")
class GenerativeGRM:
    """`threshold`: a score below it reads as "wrong" wherever a verdict is made binary (critical steps,
    agreement); by default the one chosen on held-out rollouts when the GRM was trained, else 0.5."""

    def __init__(self, model_path, answers: tuple[str, str] | None = None, threshold: float | None = None, **_):
        self.scorer = _LMScorer(model_path, answers or GENERATIVE_ANSWERS, where="generative GRM")
        record = trained_record(model_path) or {}
        self.threshold = threshold if threshold is not None else record.get("threshold", 0.5)

    def score(self, examples, parsed):
        return _score_with(self.scorer, check_prompt, examples, parsed)


RUBRIC = ("You check one step of a shopping-relevance rationale. The steps are: understand the query, "
          "read the product's facts, relate the categories, check each attribute the query asks for, judge "
          "the relevance. Is step {k} correct? Answer yes or no.")


def judge_prompt(tokenizer, ex: Example, p: Parsed, step: str) -> str:
    body = check_prompt(ex, p, step).rsplit("\n", 1)[0]
    message = f"{RUBRIC.format(k=STEPS.index(step) + 1)}\n\n{body}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True) + "Answer:"
    return message + "\nAnswer:"


@GRMS.register("judge")
class JudgeGRM:
    threshold = 0.5

    def __init__(self, model_path, answers: tuple[str, str] | None = None, **_):
        self.scorer = _LMScorer(model_path, answers or JUDGE_ANSWERS, where="judge GRM")

    def score(self, examples, parsed):
        return _score_with(self.scorer, lambda ex, p, s: judge_prompt(self.scorer.tokenizer, ex, p, s),
                           examples, parsed)


def hybrid_step_rewards(verifier: list[dict[str, bool | None]], grm: list[dict[str, float | None]],
                        mixing: str, mix_weight: float = 0.5) -> list[dict[str, float | None]]:
    """Mix verifier verdicts (where annotated) with GRM scores, per step.

    verifier_first: the verifier where it has a verdict, else the GRM; weighted: their weighted
    average where both score, else whichever does; verifier_only / grm_only: one source.
    """
    if mixing not in MIXING_MODES:
        raise ValueError(f"unknown reward mixing '{mixing}'")
    out = []
    for ver, g in zip(verifier, grm):
        row: dict[str, float | None] = {}
        for step in STEPS:
            v = None if ver.get(step) is None else float(ver[step])
            s = g.get(step)
            if mixing == "verifier_only":
                row[step] = v
            elif mixing == "grm_only":
                row[step] = s
            elif mixing == "verifier_first":
                row[step] = v if v is not None else s
            else:
                row[step] = (mix_weight * v + (1 - mix_weight) * s if v is not None and s is not None
                             else (v if v is not None else s))
        out.append(row)
    return out
