"""she-bench: an evaluation-first benchmark suite for LLM query-product relevance with chain-of-thought."""

__version__ = "0.1.0"
