"""Training methods. Each module registers `train(ctx, init_path) -> final model folder`, or, for a classic
baseline (`classic=True`), `predict(ctx) -> {example id: label}`."""
from __future__ import annotations

import importlib

from she_bench.registry import Registry, UnknownName

METHODS: Registry = Registry("method")
_MODULES = {"none": "none", "sft": "sft", "dpo": "dpo", "grpo": "grpo", "srpo": "srpo", "she": "she",
            "sft-matched": "sft", "rft": "sft", "majority": "classic", "lexical": "classic"}


def get_method(name: str):
    module = _MODULES.get(name)
    if module is None:
        raise UnknownName(f"unknown method '{name}' (known: {', '.join(sorted(_MODULES))})")
    importlib.import_module(f"she_bench.methods.{module}")
    return METHODS.get(name)
