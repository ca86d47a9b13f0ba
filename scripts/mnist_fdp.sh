#!/usr/bin/env bash
# Train functional diffusion on MNIST and draw digits at 28x28, 56x56 and 112x112 (docs/figures).
#   FUNCGEN_DATA=../shared/data scripts/mnist_fdp.sh [MAX_TIME DD:HH:MM:SS, default 00:01:10:00]
# With CKPT=path/to/last.ckpt set, skips training and only samples.
set -euo pipefail
cd "$(dirname "$0")/.."
max_time=${1:-00:01:10:00}
if [ -z "${CKPT:-}" ]; then
  funcgen fit --config configs/fdp/mnist.yaml --trainer.max_time="$max_time"
  CKPT=$(ls -t runs/fdp-mnist/funcgen/*/checkpoints/last.ckpt | head -n 1)
fi
for r in 28 56 112; do
  funcgen sample --ckpt "$CKPT" --resolution "$r" --num 16 --seed 0 --out "runs/fdp-mnist/samples_$r"
  mkdir -p docs/figures && cp "runs/fdp-mnist/samples_$r/samples.png" "docs/figures/fdp_mnist_$r.png"
done
