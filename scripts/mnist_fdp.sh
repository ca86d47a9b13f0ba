#!/usr/bin/env bash
# Train functional diffusion on MNIST and draw digits at 28x28, 56x56 and 112x112 (docs/figures).
#   FUNCGEN_DATA=../shared/data scripts/mnist_fdp.sh [MAX_TIME DD:HH:MM:SS, default 00:01:40:00]
# With CKPT=path/to/last.ckpt (or an export .safetensors) set, skips training and only samples.
# CONFIG picks the config (default configs/fdp/mnist.yaml: sparse neural operator around a grid U-Net,
# near-white noise); SAMPLE_ARGS the sampler (default: ancestral DDIM, eta = 1, 100 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
max_time=${1:-00:01:40:00}
config=${CONFIG:-configs/fdp/mnist.yaml}
sample_args=${SAMPLE_ARGS:---method-arg eta=1 --steps 100}
root=runs/fdp-$(basename "$config" .yaml)
if [ -z "${CKPT:-}" ]; then
  funcgen fit --config configs/base/trainer.yaml --config "$config" --trainer.max_time="$max_time" \
    --trainer.default_root_dir="$root" --trainer.logger.init_args.save_dir="$root"
  CKPT=$(ls -t "$root"/funcgen/*/checkpoints/last.ckpt | head -n 1)
fi
for r in 28 56 112; do
  # shellcheck disable=SC2086
  funcgen sample --ckpt "$CKPT" --resolution "$r" --num 16 --seed 0 $sample_args --out "$root/samples_$r"
  mkdir -p docs/figures && cp "$root/samples_$r/samples.png" "docs/figures/fdp_mnist_$r.png"
done
