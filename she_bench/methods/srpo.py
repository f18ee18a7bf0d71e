"""SRPO: GRPO whose advantage is a (batch x tokens) tensor built from step rewards.

Step rewards come from the hybrid of the offline verifier (annotated steps) and a generative
stepwise reward model (the rest), mixed as `reward.mixing` says. Everything else (sampling,
loss, KL, clipping, aggregation) is GRPO's: only `shape_advantages` differs, so with
`reward.step_weight=0` SRPO reproduces GRPO's loss exactly. The relevance-judgment step gets no
step reward unless `reward.judgment_step_reward` (the outcome reward already pays for it).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from she_bench.data.schema import STEPS
from she_bench.methods import METHODS
from she_bench.methods.common import Context, train_once
from she_bench.methods.grpo import SheGRPOTrainer, build_trainer
from she_bench.rewards.grm import GRMS, hybrid_step_rewards
from she_bench.rewards.step_advantages import (
    step_terms,
    token_advantages,
    token_step_index,
)


class SRPOTrainer(SheGRPOTrainer):
    def __init__(self, *args, grm=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.grm = grm

    # The GRM's random state (the oracle's flips) shapes training like the sampler's: it is saved with every
    # checkpoint beside the Trainer's RNG states and restored on resume, so a resumed run is exact.
    def _grm_state_file(self, folder) -> Path:
        return Path(folder) / f"grm_rng_state_{self.accelerator.process_index}.json"

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        rng = getattr(self.grm, "rng", None)
        if rng is not None:
            self._grm_state_file(output_dir).write_text(json.dumps(rng.getstate()))

    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        rng = getattr(self.grm, "rng", None)
        path = self._grm_state_file(checkpoint) if checkpoint else None
        if rng is not None and path is not None and path.exists():
            version, internal, gauss = json.loads(path.read_text())
            rng.setstate((version, tuple(internal), gauss))

    def step_rewards(self) -> torch.Tensor:
        """(B_local, K) hybrid step rewards for the last batch, NaN where no source scores a step."""
        cfg, o = self.ctx.cfg.reward, self.outcome
        needs_grm = cfg.mixing != "verifier_only"
        grm = self.grm.score(o.last_examples, o.last_parsed) if needs_grm else [{} for _ in o.last_parsed]
        allowed = cfg.verifier_steps
        # the verifier knows the steps of annotated prompts only (the card's annotation_share); the label always
        ver = [{s: (v[s] if (allowed is None or s in allowed) and (ex.annotated or s == "relevance_judgment") else None)
                for s in STEPS} for v, ex in zip(o.last_verdicts, o.last_examples)]
        mixed = hybrid_step_rewards(ver, grm, cfg.mixing, cfg.mix_weight)
        rewarded = [s for s in STEPS if cfg.judgment_step_reward or s != "relevance_judgment"]
        return torch.tensor([[r[s] if s in rewarded and r[s] is not None else float("nan") for s in STEPS]
                             for r in mixed])

    def shuffled(self, rewards: torch.Tensor) -> torch.Tensor:
        """The negative control (reward.shuffle_step_rewards): each group's step-reward rows permuted among its
        rollouts, so the spread stays and the information goes. Seeded by the run's seed and the step, so every
        process draws the same permutation and a resumed run draws the same again."""
        g = self.num_generations
        gen = torch.Generator().manual_seed(self.ctx.cfg.rl_seed * 1_000_003 + int(self.state.global_step))
        order = torch.cat([torch.randperm(g, generator=gen) + i * g for i in range(len(rewards) // g)])
        return rewards[order.to(rewards.device)]

    def shape_advantages(self, out) -> torch.Tensor:
        cfg = self.ctx.cfg.reward
        device = self.accelerator.device
        local = self.step_rewards().to(device)
        correct = torch.tensor(self.outcome.last_correct, device=device)
        # group statistics need whole groups, which may span processes
        everyone, everyone_correct = self.accelerator.gather(local), self.accelerator.gather(correct)
        if cfg.shuffle_step_rewards:
            everyone = self.shuffled(everyone)
            local = everyone[self._local_slice(len(local))]
        per_step, per_seq = step_terms(everyone, everyone_correct, self.num_generations, cfg.step_weight,
                                       cfg.critical_weight, cfg.scalar, cfg.step_min_std,
                                       threshold=getattr(self.grm, "threshold", 0.5))
        sl = self._local_slice(len(local))
        completion_ids = out["completion_ids"]
        ids = [row[mask.bool()].tolist() for row, mask in zip(completion_ids, out["completion_mask"])]
        token_steps = token_step_index(self.processing_class, ids, [p.step_spans for p in self.outcome.last_parsed],
                                       STEPS, completion_ids.shape[1])
        self._log_step_signal(everyone, per_step, per_seq, out["advantages"])
        return token_advantages(out["advantages"], per_step[sl], per_seq[sl], token_steps.to(device),
                                clip=self.ctx.cfg.rl.advantage_clip)


    def _log_step_signal(self, rewards: torch.Tensor, per_step: torch.Tensor, per_seq: torch.Tensor,
                         outcome: torch.Tensor) -> None:
        """Per step, over the whole batch: its mean reward, the share of groups whose rewards for it spread
        (the only groups where it can give credit), and the mean |step term| of the rollouts it scored, beside
        the mean |outcome advantage| (clamped as in the loss)."""
        g = self.num_generations
        clip = self.ctx.cfg.rl.advantage_clip
        adv = outcome.clamp(-clip, clip) if clip is not None else outcome
        self._log("outcome_advantage_abs", float(adv.abs().mean()))
        if self.ctx.cfg.reward.scalar:
            self._log("step_term_abs/sequence", float(per_seq.abs().mean()))
        for k, step in enumerate(STEPS):
            col = rewards[:, k]
            scored = ~torch.isnan(col)
            if not scored.any():
                continue
            groups = col.view(-1, g)
            spread = [bool(x[~torch.isnan(x)].numel() >= 2 and x[~torch.isnan(x)].std() > 0) for x in groups]
            self._log(f"step_reward/{step}", float(torch.nanmean(col)))
            self._log(f"step_spread/{step}", sum(spread) / len(spread))
            if not self.ctx.cfg.reward.scalar:
                self._log(f"step_term_abs/{step}", float(per_step[:, k][scored].abs().mean()))


def build_grm(ctx: Context, init: Path, seed_offset: int = 0):
    """The run's GRM. LM-scored kinds start from the shared warm start (never from a curriculum stage's
    policy, which would then judge itself)."""
    cfg = ctx.cfg.reward
    kind = GRMS.get(cfg.grm)
    if cfg.grm == "oracle":
        return kind(labels=ctx.bench.labels, error_rate=cfg.grm_error_rate, seed=ctx.cfg.rl_seed + seed_offset)
    base = ctx.warm_start or init
    answers = tuple(cfg.grm_answers) if cfg.grm_answers else None
    if cfg.grm == "generative":
        from she_bench.methods.train_grm import train_generative_grm

        path = Path(cfg.grm_model) if cfg.grm_model else train_generative_grm(ctx, base)
        if not cfg.grm_model:
            check_grm_quality(ctx, path)
        return kind(model_path=path, answers=answers)
    from she_bench.models import resolve_model

    return kind(model_path=resolve_model(cfg.grm_model or str(base)), answers=answers)


def grm_scored_steps(ctx: Context) -> list[str]:
    """The steps whose step reward comes from the GRM in this run (where the verifier has no verdict)."""
    r = ctx.cfg.reward
    rewarded = [s for s in STEPS if r.judgment_step_reward or s != "relevance_judgment"]
    if r.mixing in ("grm_only", "weighted"):
        return rewarded
    verified = [s for s in ctx.bench.card.annotated_steps if r.verifier_steps is None or s in r.verifier_steps]
    return [s for s in rewarded if s not in verified]


def check_grm_quality(ctx: Context, path: Path) -> None:
    """Stop, in one line, when the trained GRM's held-out AUROC on a step it scores here is below
    reward.grm_min_auroc: a GRM that cannot tell right from wrong steps turns step rewards into noise."""
    from she_bench.config import ConfigError
    from she_bench.rewards.grm import trained_record

    floor = ctx.cfg.reward.grm_min_auroc
    steps = (trained_record(path) or {}).get("heldout", {}).get("steps", {})
    weak = {s: steps[s]["auroc"] for s in grm_scored_steps(ctx)
            if (steps.get(s) or {}).get("auroc") is not None and steps[s]["auroc"] < floor}
    if weak:
        shown = ", ".join(f"{s} {a:.3f}" for s, a in weak.items())
        raise ConfigError(f"the trained GRM ({path}) judges held-out steps at AUROC {shown}, below "
                          f"reward.grm_min_auroc {floor:g}: its step rewards would be noise "
                          "(reward.grm_min_auroc=0 runs anyway)")


@METHODS.register("srpo")
def train(ctx: Context, init: Path) -> Path:
    def build():
        grm = None if ctx.cfg.reward.mixing == "verifier_only" else build_grm(ctx, init)
        return build_trainer(ctx, init, SRPOTrainer, grm=grm)

    return train_once(ctx.checkpoints, build, ctx)
