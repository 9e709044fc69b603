# Sourced by the device scripts that run from a snapshot folder (tools/gpu_multi.sh, tools/gpu_ident.sh):
# unpacks the carried wheels of whl/ into /tmp/site (wheels are zips; no pip needed) and sets the
# environment. NVLink multicast stays off (the image sets NCCL_NVLS_ENABLE=0; it is kept, or set if missing).
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
for w in whl/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SUPPORTTUNE_PROGRESS=0
export SUPPORTTUNE_HOME=${SUPPORTTUNE_HOME:-/tmp/supporttune-home} NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
