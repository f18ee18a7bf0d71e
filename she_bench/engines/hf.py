"""Batched generation with Hugging Face transformers (CPU or GPU)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from she_bench.engines import ENGINES, Generation
from she_bench.models import load_model, load_tokenizer


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


@ENGINES.register("transformers")
class TransformersEngine:
    def __init__(self, model_path, model=None, tokenizer=None, device: str | None = None,
                 dtype: torch.dtype = torch.float32):
        self.tokenizer = tokenizer or load_tokenizer(model_path)
        self.tokenizer.padding_side = "left"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = (model or load_model(model_path, dtype=dtype)).to(self.device).eval()

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int = 96, batch_size: int = 32,
                 temperature: float = 0.0, seed: int = 0, progress: bool = True) -> list[Generation]:
        torch.manual_seed(seed)
        out: list[Generation] = []
        eos = self.tokenizer.eos_token_id
        bar = tqdm(total=len(prompts), desc="generate", unit="ex", disable=not progress)
        # Longest prompts first keeps padding low within a batch; results are put back in order.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: dict[int, Generation] = {}
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            gen = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos,
                return_dict_in_generate=True, output_logits=True,
            )
            new = gen.sequences[:, enc["input_ids"].shape[1]:]
            ent = token_entropy(torch.stack(gen.logits, dim=1))  # (batch, new tokens)
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                n = ids.index(eos) + 1 if eos in ids else len(ids)
                text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
                results[i] = Generation(text=text, n_tokens=n, entropy=float(ent[row, :n].mean()) if n else None)
            bar.update(len(idx))
        bar.close()
        out = [results[i] for i in range(len(prompts))]
        return out
