"""The anchor a user would pick instead of functional diffusion: a plain pixel-space DDPM on MNIST.

diffusers' ``UNet2DModel`` (28 -> 14 -> 7, channels 32/64/64, attention at 14x14: about 1.1 M parameters,
comparable to the FDP MNIST config's sparse neural operator) with its ``DDPMScheduler`` (linear betas,
1000 training levels, epsilon prediction, Ho et al. 2020 eq. 14), trained on the same 8000 training
images funcgen's MNIST data module serves (``FUNCGEN_DATA``), pixels in ``[-1, 1]``, for a budget of CPU
minutes of this process (``time.process_time``; run with ``OMP_NUM_THREADS=1`` for single-thread minutes).
EMA of the weights as in funcgen's trainer.

Scored by the bench's own MNIST evaluation (:func:`funcgen.bench.run._eval_mnist`: FD_LeNet of ``--num``
samples against test images 8000..9999, the real-image floor, confident fraction) at 28 px, and at 56 and
112 px, where the pixel model's only option is to upsample its 28-px samples bilinearly (the bench then area-
averages them back to 28 as it does for every resolution).

    pip install -e '.[anchors]'       # diffusers
    OMP_NUM_THREADS=1 FUNCGEN_DATA=../shared/data python scripts/anchors/pixel_ddpm.py --minutes 60 \
        --out docs/results/mnist_pixel_ddpm.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from funcgen.bench.run import _eval_mnist  # noqa: E402
from funcgen.data import MNISTDataModule  # noqa: E402
from funcgen.pointset import PointSet, grid_to_pointset  # noqa: E402


def make_model():
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError as e:  # pragma: no cover - optional extra
        raise SystemExit("the pixel-DDPM anchor needs diffusers: pip install -e '.[anchors]'") from e
    net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                      norm_num_groups=8)
    return net, DDPMScheduler(num_train_timesteps=1000)


class PixelSampler:
    """A bench-compatible stand-in generator: draws ``num`` 28-px DDPM samples once (``steps`` ancestral
    DDPM steps over a subset of the 1000 levels) and serves them at any resolution by bilinear upsampling."""

    dim = 2

    def __init__(self, net, scheduler, steps: int, batch_size: int = 250) -> None:
        self.net, self.scheduler, self.steps, self.batch_size = net, scheduler, steps, batch_size
        self.cache: dict[tuple[int, int], torch.Tensor] = {}
        self.sample_seconds = 0.0

    @torch.no_grad()
    def _draw(self, num: int, seed: int) -> torch.Tensor:
        if (num, seed) not in self.cache:
            t0 = time.process_time()
            gen = torch.Generator().manual_seed(seed)
            out = []
            for lo in range(0, num, self.batch_size):
                b = min(self.batch_size, num - lo)
                x = torch.randn(b, 1, 28, 28, generator=gen)
                self.scheduler.set_timesteps(self.steps)
                for t in self.scheduler.timesteps:
                    eps = self.net(x, t).sample
                    x = self.scheduler.step(eps, t, x, generator=gen).prev_sample
                out.append(x)
                print(f"  sampled {lo + b}/{num}", flush=True)
            self.cache[(num, seed)] = torch.cat(out)
            self.sample_seconds += time.process_time() - t0
        return self.cache[(num, seed)]

    def sample(self, num: int, resolution: int, *, seed: int, steps=None, batch_size=None, denormalize=True,
               progress=False) -> PointSet:
        x = self._draw(num, seed)
        if resolution != 28:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        if denormalize:
            x = x * 0.5 + 0.5  # model space [-1, 1] -> intensities [0, 1], as MNISTDataModule.denormalize
        return grid_to_pointset(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="training budget in CPU minutes of this process")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--steps", type=int, default=100, help="DDPM sampling steps (of the 1000 training levels)")
    p.add_argument("--num", type=int, default=2000, help="samples scored (the bench's count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/results/mnist_pixel_ddpm.json")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    dm = MNISTDataModule(batch_size=args.batch_size, seed=args.seed)
    dm.setup("fit")
    images = torch.stack([dm.train_set[i][1] for i in range(len(dm.train_set))])  # [8000, 784, 1] in [-1, 1]
    images = images.reshape(-1, 1, 28, 28)
    net, scheduler = make_model()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    params = sum(q.numel() for q in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = 500
    gen = torch.Generator().manual_seed(args.seed + 1)
    budget, c0, t_wall = args.minutes * 60.0, time.process_time(), time.time()
    step, perm, pos, loss_avg = 0, torch.randperm(len(images), generator=gen), 0, None
    print(f"pixel DDPM: {params} parameters, {len(images)} training images, {args.minutes} CPU minutes", flush=True)
    while time.process_time() - c0 < budget:
        if pos + args.batch_size > len(perm):
            perm, pos = torch.randperm(len(images), generator=gen), 0
        x0 = images[perm[pos:pos + args.batch_size]]
        pos += args.batch_size
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen)
        loss = F.mse_loss(net(scheduler.add_noise(x0, noise, t), t).sample, noise)
        # linear warm-up, then cosine decay to 10% over the CPU budget (as funcgen's trainer)
        frac = (time.process_time() - c0) / budget
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for group in opt.param_groups:
            group["lr"] = args.lr * scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1.0 - args.ema)
        step += 1
        loss_avg = float(loss.detach()) if loss_avg is None else 0.98 * loss_avg + 0.02 * float(loss.detach())
        if step % 100 == 0:
            print(f"step {step} loss {loss_avg:.4f} cpu {time.process_time() - c0:.0f}s", flush=True)
    train_cpu, train_wall = time.process_time() - c0, time.time() - t_wall

    sampler = PixelSampler(ema, scheduler, args.steps)
    metrics, reference, _ = _eval_mnist(sampler, dm, args.seed, resolutions=(28, 56, 112), num=args.num, refine=())
    record = {"task": "mnist", "method": "pixel_ddpm", "seed": args.seed, "minutes": args.minutes,
              "budget_clock": "cpu", "model": "diffusers UNet2DModel (32, 64, 64), DDPMScheduler",
              "parameters": params, "train_steps": step, "train_cpu_seconds": round(train_cpu, 1),
              "train_seconds": round(train_wall, 1), "sample_steps": args.steps, "num_samples": args.num,
              "sample_cpu_seconds": round(sampler.sample_seconds, 1),
              "upsampling": "28-px samples bilinearly upsampled to 56 and 112, area-averaged back to 28 by the metric",
              "command": "OMP_NUM_THREADS=1 FUNCGEN_DATA=../shared/data python scripts/anchors/pixel_ddpm.py "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "metrics": metrics, "reference": reference}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
