"""Speed of the same distillation train step in PyTorch, eager and ``torch.compile``.

The step of ``benchmarks/train_step.py``, written in PyTorch with the reference-layout models
of ``benchmarks/torch_models.py``: the teacher's forward pass (eval mode, no gradient), the
student's forward and backward passes (train mode), cross-entropy plus the KD or FiGKD term
with the weights and temperature of the pair's benchmark config (``configs/benchmarks.py``),
and PyTorch SGD with its momentum, weight decay and learning rate. Each batch is built on the
device from a synthetic uint8 split of the dataset's shapes, as in the JAX benchmark: gather,
zero-pad and crop, flip, normalise. The FiGKD term is ``T^2 KL`` between the softmaxes of the
Haar high bands at ``config.method.figkd.level`` (each logit minus the mean of its block of
``2^level`` classes; class counts divisible by ``2^level`` only).

PyTorch's own advice for convolutional networks on tensor cores is followed: channels-last
models and inputs, cuDNN autotuning (``cudnn.benchmark``), TF32 allowed in float32 (what JAX's
default precision does on GPUs), bfloat16 under ``torch.autocast`` (float32 parameters,
bfloat16 convolutions and matmuls: what the JAX models' ``dtype`` does), and the fused SGD
kernel on CUDA. ``compile`` wraps the forward pass and the loss in ``torch.compile`` (default
mode); the backward pass is then compiled too, the optimiser step stays eager.

Step time: the median over rounds of ``--steps_per_sync`` steps launched back to back, then one
device synchronisation, divided by the steps (PyTorch's eager mode overlaps the launches of
consecutive steps; a synchronisation after every step would hide that). "first call s" is the
time of the first step, compilation and autotuning included. One Markdown table row per
setting:

    python benchmarks/torch_step.py --teacher resnet32x4 wrn_40_2 --student resnet8x4 wrn_16_2 \
        --batch_size 64 512 --dtype float32 bfloat16 --mode eager compile
    python benchmarks/torch_step.py --quick     # resnet8 -> resnet8, batch 32, eager, on CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.torch_models import TORCH_MODELS
from configs import benchmarks
from figkd_jax.data.registry import DatasetInfo, PadCropFlip, get_info

METHODS = ("figkd", "kd")
MODES = ("eager", "compile")
_MAX_SYNTHETIC_EXAMPLES = 50_000

HEADER = (
    "| device | framework | teacher → student | method | batch | dtype | steps/sync "
    "| first call s | step ms | img/s | min/{epochs} ep |"
)


@dataclasses.dataclass(frozen=True)
class TorchSetting:
    dataset: str
    teacher: str
    student: str
    method: str
    batch_size: int
    dtype: str
    mode: str  # "eager" or "compile"


@dataclasses.dataclass(frozen=True)
class TorchResult:
    setting: TorchSetting
    device_name: str
    first_call_seconds: float
    step_seconds: float
    steps_per_sync: int
    first_loss: float  # loss of the first step (from the initial weights)

    @property
    def images_per_second(self) -> float:
        return self.setting.batch_size / self.step_seconds

    def row(self, epochs: int, num_train: int) -> str:
        s = self.setting
        minutes = epochs * num_train / self.images_per_second / 60
        return (
            f"| {self.device_name} | torch {s.mode} | {s.teacher} → {s.student} | {s.method} "
            f"| {s.batch_size} | {s.dtype} | {self.steps_per_sync} "
            f"| {self.first_call_seconds:.1f} | {1e3 * self.step_seconds:.2f} "
            f"| {self.images_per_second:,.0f} | {minutes:,.1f} |"
        )


def haar_high_band(logits: torch.Tensor, level: int) -> torch.Tensor:
    """[B, C] -> [B, C]: each logit minus the mean of its block of ``2**level`` classes, the Haar
    high band of ``figkd_jax.wavelets.haar_highpass`` when C is a multiple of ``2**level``."""
    block = 2**level
    if level < 1 or logits.shape[-1] % block:
        raise ValueError(
            f"level must be >= 1 with the class count {logits.shape[-1]} a multiple of "
            f"2**level, got level {level}"
        )
    blocks = logits.unflatten(-1, (-1, block))
    return (blocks - blocks.mean(-1, keepdim=True)).flatten(-2)


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example ``T^2 KL(softmax(t / T) || softmax(s / T))`` in float32, shape [B]."""
    log_p_teacher = F.log_softmax(teacher.float() / temperature, -1)
    log_p_student = F.log_softmax(student.float() / temperature, -1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return temperature**2 * kl


def objective(method_config):
    """(student logits, teacher logits, labels) -> scalar loss: the mean over the batch of
    ``ce_weight`` x cross-entropy plus the weighted KD or FiGKD term of ``method_config``."""
    name, temperature = method_config.name, method_config.temperature
    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    if name == "figkd" and (method_config.figkd.band, method_config.figkd.domain) != (
        "high",
        "logits",
    ):
        raise ValueError("the PyTorch FiGKD term is the high band in the logit domain only")
    weights = method_config[name]
    distill_weight = weights.kd_weight if name == "kd" else weights.figkd_weight
    level = method_config.figkd.level

    def loss(student, teacher, labels):
        ce = F.cross_entropy(student.float(), labels)
        if name == "figkd":
            student, teacher = (
                haar_high_band(student.float(), level),
                haar_high_band(teacher.float(), level),
            )
        distill = kd_term(student, teacher, temperature).mean()
        return weights.ce_weight * ce + distill_weight * distill

    return loss


def augment(images, labels, index, draws, *, pad: int, flip: bool, scale, shift):
    """The on-device batch: images uint8 [N, H, W, C] gathered at ``index`` [B], zero-padded by
    ``pad``, cropped at offsets ``floor(draw * (2 pad + 1))``, mirrored where ``draw < 0.5``
    (``draws`` float32 [B, 3]), normalised; returns (float32 NCHW channels-last, labels [B])."""
    batch = images[index]
    size, height, width, _ = batch.shape
    offsets = torch.clamp((draws[:, :2] * (2 * pad + 1)).floor().long(), max=2 * pad)
    padded = F.pad(batch, (0, 0, pad, pad, pad, pad))
    rows = offsets[:, :1] + torch.arange(height, device=images.device)
    cols = offsets[:, 1:] + torch.arange(width, device=images.device)
    every = torch.arange(size, device=images.device)[:, None, None]
    crops = padded[every, rows[:, :, None], cols[:, None, :]]
    if flip:
        crops = torch.where((draws[:, 2] < 0.5)[:, None, None, None], crops.flip(2), crops)
    # NHWC-contiguous permuted to NCHW is the channels-last layout.
    return (crops.float() * scale + shift).permute(0, 3, 1, 2), labels[index]


def synthetic_split(info: DatasetInfo, batch_size: int, device: torch.device, seed: int = 0):
    """Random uint8 images and labels of the dataset's shapes (at most 50,000) and one epoch's
    random order and augmentation draws, on ``device``."""
    num_examples = min(info.num_train, _MAX_SYNTHETIC_EXAMPLES)
    steps = num_examples // batch_size
    rng = np.random.default_rng(seed)
    put = lambda x: torch.from_numpy(x).to(device)
    images = put(rng.integers(0, 256, (num_examples, *info.image_shape), dtype=np.uint8))
    labels = put(rng.integers(0, info.num_classes, num_examples))
    index = put(rng.permutation(num_examples)[: steps * batch_size].reshape(steps, -1))
    draws = put(rng.random((steps, batch_size, 3), dtype=np.float32))
    return images, labels, index, draws


def make_step(setting: TorchSetting, device: torch.device):
    """(step, data): ``step(data, k)`` runs train step ``k`` and returns its loss (a tensor)."""
    config = benchmarks.benchmark_config(setting.dataset, f"student={setting.student}")
    config.method.name = setting.method
    info = get_info(setting.dataset)
    if not isinstance(info.augment, PadCropFlip) or info.image_shape[-1] != 3:
        raise ValueError(f"--dataset must have RGB images of a fixed size, not {info.name}")
    if setting.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {setting.dtype!r}")
    if setting.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {setting.mode!r}")
    # The same initial weights in every setting of the pair: the first-step losses of float32
    # and bfloat16 are then comparable.
    torch.manual_seed(0)
    teacher = TORCH_MODELS[setting.teacher](info.num_classes)
    student = TORCH_MODELS[setting.student](info.num_classes)
    teacher = teacher.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
    student = student.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(
        student.parameters(),
        lr=config.optim.learning_rate,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
        fused=device.type == "cuda",
    )
    loss_of = objective(config.method)
    std = torch.tensor(info.std, dtype=torch.float32, device=device)
    mean = torch.tensor(info.mean, dtype=torch.float32, device=device)
    spec = info.augment
    half = setting.dtype == "bfloat16"

    def forward_loss(images, labels, index, draws):
        x, y = augment(
            images, labels, index, draws, pad=spec.pad, flip=spec.flip,
            scale=1 / (255 * std), shift=-mean / std,
        )  # fmt: skip
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=half):
            with torch.no_grad():
                teacher_logits = teacher(x)
            student_logits = student(x)
        return loss_of(student_logits, teacher_logits, y)

    if setting.mode == "compile":
        forward_loss = torch.compile(forward_loss)
    data = synthetic_split(info, setting.batch_size, device)

    def step(data, k: int):
        images, labels, index, draws = data
        position = k % index.shape[0]
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(images, labels, index[position], draws[position])
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, data


def configure(device: torch.device) -> None:
    """cuDNN autotuning and TF32 on CUDA (see the module docstring)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def benchmark(
    setting: TorchSetting, device: torch.device, *, timed_steps: int, steps_per_sync: int
) -> TorchResult:
    """First-call time, then the median step time over rounds of ``steps_per_sync`` steps."""
    configure(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step, data = make_step(setting, device)
    start = time.perf_counter()
    first_loss = float(step(data, 0))  # float() waits for the step
    first_call_seconds = time.perf_counter() - start
    for k in range(1, 3):  # warm-up: the remaining autotuning, the allocator's growth
        loss = step(data, k)
    sync()
    seconds, k = [], 3
    for _ in range(max(3, -(-timed_steps // steps_per_sync))):
        start = time.perf_counter()
        for _ in range(steps_per_sync):
            loss = step(data, k)
            k += 1
        sync()
        seconds.append((time.perf_counter() - start) / steps_per_sync)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss in {setting}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return TorchResult(
        setting=setting,
        device_name=name,
        first_call_seconds=first_call_seconds,
        step_seconds=statistics.median(seconds),
        steps_per_sync=steps_per_sync,
        first_loss=first_loss,
    )


def release(device: torch.device) -> None:
    """Returns the cached device memory of finished settings (JAX may share the device)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def settings(args) -> list[TorchSetting]:
    return [
        TorchSetting(args.dataset, teacher, student, args.method, batch_size, dtype, mode)
        for (teacher, student), batch_size, dtype, mode in itertools.product(
            zip(args.teacher, args.student, strict=True), args.batch_size, args.dtype, args.mode
        )
    ]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar100", choices=["cifar100", "tiny_imagenet"])
    parser.add_argument("--teacher", nargs="+", default=["resnet32x4"], choices=TORCH_MODELS)
    parser.add_argument(
        "--student",
        nargs="+",
        default=["resnet8x4"],
        choices=TORCH_MODELS,
        help="one student per --teacher (pairs are zipped)",
    )
    parser.add_argument("--method", default="figkd", choices=METHODS)
    parser.add_argument("--batch_size", type=int, nargs="+", default=[64])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--mode", nargs="+", default=["eager"], choices=MODES)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--timed_steps", type=int, default=60, help="timed steps per setting")
    parser.add_argument("--steps_per_sync", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=240, help="full-protocol estimate")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU check in seconds: resnet8 -> resnet8 figkd, batch 32, 3 timed steps",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.teacher, args.student, args.method = ["resnet8"], ["resnet8"], "figkd"
        args.batch_size, args.timed_steps, args.steps_per_sync = [32], 3, 1
    if len(args.teacher) != len(args.student):
        parser.error("give one --teacher per --student (the pairs are zipped)")
    for name in ("batch_size", "timed_steps", "steps_per_sync"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{name} values must be >= 1")
    return args


def default_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def main(argv=None) -> int:
    args = parse_args(argv)
    device = default_device(args.device)
    num_train = get_info(args.dataset).num_train
    print(f"{args.dataset}, torch {torch.__version__}, {args.timed_steps} timed steps per setting")
    print(HEADER.format(epochs=args.epochs))
    print("|" + "---|" * (HEADER.count("|") - 1))
    for setting in settings(args):
        result = benchmark(
            setting, device, timed_steps=args.timed_steps, steps_per_sync=args.steps_per_sync
        )
        print(result.row(args.epochs, num_train), flush=True)
        release(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
