"""What the console shows. By default: one progress bar per stage with the figures a user watches,
the evaluation bar and the summary; library logs, Trainer dictionaries and deprecation warnings
stay out (`--verbose` brings them back; train_log.jsonl always keeps every figure)."""
from __future__ import annotations

import logging
import os
import warnings

VERBOSE = False


def configure(verbose: bool) -> None:
    global VERBOSE
    VERBOSE = verbose
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "trl", "accelerate", "datasets", "peft", "torch", "httpx", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars at every checkpoint
