#!/usr/bin/env bash
# The retrieval/history ablation of docs/RESULTS.md on a device machine with several GPUs.
# Needs (carried, git-ignored): .dev/wsmall (wheels), .dev/ga + .dev/gb (the embedded GGUF in two halves,
# carried by two back-to-back calls), .dev/twcs (`supporttune prepare --input ../shared/data/twcs_sample.csv
# --format twcs --out .dev/twcs`). Results come back as $OUT/rag.tgz (no adapters); then here:
#   supporttune run --config src/supporttune/configs/rag-ablation.yaml --data .dev/twcs --out runs/rag --resume
#   supporttune report runs/rag --rescore          # semantic similarity (MiniLM) on the CPU
source tools/device_setup.sh
export OUT=${OUT:-/tmp/out} NCCL_NVLS_ENABLE=0
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
python3 tools/gpu_suite.py --config src/supporttune/configs/rag-ablation.yaml --data .dev/twcs --out /tmp/rag \
    --gpus "$GPUS" --per-gpu "${PER_GPU:-4}" --deadline "${DEADLINE:-400}" 2>&1 | tee $OUT/gpu_suite.log
tar czf $OUT/rag.tgz -C /tmp --exclude='adapter_model.safetensors' --exclude='checkpoints' rag
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > $OUT/gpus.csv
ls -la $OUT
