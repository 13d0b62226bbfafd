#!/usr/bin/env bash
# On a CUDA machine, in the repository root: the CUDA tests, the GPU report, then the demo on the GPU and the
# report's accuracy and torch.compile sections on the demo's checkpoints. Logs go into OUT as they are written.
#   bash bench/gpu_check.sh OUT
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT}
mkdir -p "$out/more"
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    python3 -c "import torch, cv2, albumentations; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cv2', cv2.__version__, 'albumentations', albumentations.__version__)"
    timeout 150 python3 -m pytest -m cuda -q -p no:cacheprovider tests/scenarios/test_cuda.py
} 2>&1 | tee "$out/pytest_cuda.log"
timeout 250 python3 -m bench.bench_gpu --out "$out" --skip demo,compile 2>&1 | tee "$out/bench_gpu.log"
timeout 110 python3 -m scripts.demo --device cuda --epochs_256 12 --epochs_352 8 > "$out/demo.log" 2>&1
echo "demo exit status $?" | tee -a "$out/demo.log"
timeout 120 python3 -m bench.bench_gpu --out "$out/more" --skip correctness,inference,end_to_end,training --demo .
