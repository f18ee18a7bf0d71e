"""Generation engines behind one interface: `engine.generate(prompts) -> [Generation]`."""
from __future__ import annotations

from dataclasses import dataclass

from she_bench.registry import Registry


@dataclass
class Generation:
    text: str
    n_tokens: int
    entropy: float | None  # mean entropy (nats) of the policy over the generated tokens


ENGINES: Registry = Registry("engine")


def build_engine(name: str, model_path, **kwargs):
    from she_bench.config import ConfigError

    if name == "transformers":
        from she_bench.engines import hf  # noqa: F401
    elif name == "vllm":
        from she_bench.engines import vllm  # noqa: F401
    else:
        raise ConfigError(f"unknown engine '{name}' (transformers or vllm)")
    try:
        return ENGINES.get(name)(model_path, **kwargs)
    except ImportError as e:  # vLLM absent or broken: its message says how to install it
        raise ConfigError(str(e)) from e
