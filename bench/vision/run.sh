#!/usr/bin/env bash
# bench/vision: CareSync's engine and PyTorch on the same network, same run.
#   bench/vision/run.sh [caresync-build-dir] [shared-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
shared=${2:-../shared}
ours=$("$build/vision_bench" "$shared" models/screening.csm)
echo "== CareSync (C, OpenBLAS) =="
echo "$ours"
if ! /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
  echo "(PyTorch comparison skipped: python3-torch / python3-torchvision not installed)"
  exit 0
fi
theirs=$(/usr/bin/python3 bench/vision/torch_bench.py)
echo "== PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') (same network, CPU) =="
echo "$theirs"
echo "== ratio (CareSync / PyTorch, images per second) =="
for key in "inference batch 1, 1 thread" "inference batch 1, 2 threads" "inference batch 16, 2 threads" \
           "training batch 16, 1 thread" "training batch 16, 2 threads"; do
  a=$(grep -F "$key " <<<"$ours" | awk '{for (i = 1; i <= NF; i++) if ($(i + 1) == "img/s") { print $i; exit }}')
  b=$(grep -F "$key " <<<"$theirs" | awk '{for (i = 1; i <= NF; i++) if ($(i + 1) == "img/s") { print $i; exit }}')
  awk -v k="$key" -v a="$a" -v b="$b" 'BEGIN { printf "%-40s %6.2fx\n", k, a / b }'
done
