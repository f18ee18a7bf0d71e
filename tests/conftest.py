"""Test-wide setup: every cache points into a temporary folder and nothing goes online.

tox sets these variables already; a bare `pytest` run gets them here. Only unset ones are
set, so a caller's choice (e.g. a shared SHE_BENCH_CACHE to reuse built toy models) wins.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Read by huggingface_hub / transformers at import time, so set before any test module imports them.
for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)
_ROOT = tempfile.mkdtemp(prefix="she-bench-tests-")
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = os.path.join(_ROOT, "hf")


@pytest.fixture(scope="session", autouse=True)
def isolated_caches():
    """SHE_BENCH_CACHE, XDG_CACHE_HOME (and MPLCONFIGDIR) in a temporary folder, if unset."""
    added = []
    for key, sub in (("SHE_BENCH_CACHE", "she-bench"), ("XDG_CACHE_HOME", "cache"), ("MPLCONFIGDIR", "mpl")):
        if not os.environ.get(key):
            os.environ[key] = os.path.join(_ROOT, sub)
            added.append(key)
    yield
    for key in added:
        os.environ.pop(key, None)
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads slow tiny models ~100x
    whenever another process is busy; one thread is as fast for toy models when the machine is idle."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
