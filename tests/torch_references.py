"""PyTorch reference models for the conversion tests, and torchvision's in a process of their own.

torchvision imports ``torch._dynamo``, which imports triton (a dependency of torch's PyPI
wheels), and triton segfaults when it is loaded after TensorFlow (torch 2.14.1, triton 3.8.0,
tensorflow-cpu 2.21.0: ``import tensorflow; import triton`` crashes, the other order does
not). Test processes load TensorFlow, so torchvision runs here, as a script::

    python -m tests.torch_references OUT NAME [NAME ...] [--image_size S]

For each NAME (a ``torchvision.models`` constructor, e.g. resnet34), seeded, with realistic
BatchNorm statistics, it writes ``OUT/NAME.pth`` (the state dict, bare, as torchvision's
downloads are) and ``OUT/NAME.json`` (its parameter count); with ``--image_size``, also
``OUT/images.npy`` (two random NHWC images) and ``OUT/NAME-logits.npy`` (the eval-mode logits).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_realistic_batch_norms(model: nn.Module, image_size: int) -> nn.Module:
    """``model`` in eval mode with random BN affine parameters and realistic BN statistics.

    The statistics are those of one training-mode pass over random images, then perturbed: like
    a trained network's, they centre and scale every channel, so that the logits depend on the
    input through every layer (with arbitrary statistics a deep random network's logits are
    nearly constant and a comparison would barely test the convolutions), and eval-mode BN
    (running statistics, not the batch's) is what a comparison exercises.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.momentum = None  # Running statistics = those of the (single) pass.
        model.train()(torch.randn(4, 3, image_size, image_size))
        for bn in norms:
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
    return model.eval()


def torch_logits(model: nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)).numpy()


def torchvision_references(out_dir: str, *names: str, image_size: int | None = None) -> None:
    """Runs this script: the files above for ``names`` in ``out_dir``. Skips the calling test
    where torchvision is not installed (checked without importing it, see above)."""
    import pytest

    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    size = [] if image_size is None else ["--image_size", str(image_size)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.torch_references", str(out_dir), *names, *size],
        cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("names", nargs="+")
    parser.add_argument("--image_size", type=int, default=None)
    args = parser.parse_args()
    import torchvision

    calibration_size = args.image_size or 64
    images = None
    if args.image_size is not None:
        shape = (2, args.image_size, args.image_size, 3)
        images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        np.save(os.path.join(args.out, "images.npy"), images)
    for name in args.names:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None)
        model = with_realistic_batch_norms(model, calibration_size)
        torch.save(model.state_dict(), os.path.join(args.out, f"{name}.pth"))
        count = sum(p.numel() for p in model.parameters())
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump({"num_parameters": count}, f)
        if images is not None:
            np.save(os.path.join(args.out, f"{name}-logits.npy"), torch_logits(model, images))


if __name__ == "__main__":
    main()
