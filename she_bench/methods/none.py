"""No training after the warm start: evaluates the shared starting point every method leaves from."""
from __future__ import annotations

from pathlib import Path

from she_bench.methods import METHODS
from she_bench.methods.common import Context


@METHODS.register("none")
def train(ctx: Context, init: Path) -> Path:
    return init
