"""Import a PyTorch checkpoint of a reference model as a teacher checkpoint directory.

Usage::

    python -m figkd_jax.tools.convert_torch resnet32x4.pth --model resnet32x4 \
        --out teachers/resnet32x4
    python launch.py --workdir=runs/figkd \
        --config=configs/cifar100.py:teacher=resnet32x4,student=resnet8x4,method=figkd \
        --config.teacher.checkpoint=teachers/resnet32x4

Reads the checkpoints of mdistiller / RepDistiller (``{"model": state_dict, ...}``), bare state
dicts, and either with the ``module.`` prefix of ``DataParallel``. The mapping is generic, for
every model of ``figkd_jax.models``, since their Flax parameter trees mirror the references'
module names (tested against the CIFAR teachers, mdistiller's ImageNet MobileNetV1 and
torchvision's ResNet-34/50: a file torchvision downloads, e.g. ``resnet34-b627a593.pth``, is a
bare state dict; convert it with ``--model resnet34_imagenet``). The key rule (see
``figkd_jax.models``): split a key at ".", join every numeric component onto the one before it
with "_", rename the leaf; conv weights
(O, I/groups, kh, kw) become kernels (kh, kw, I/groups, O), linear weights (O, I) become (I, O).

The conversion is checked before anything is written: every Flax leaf is filled exactly once
with its exact shape and no PyTorch tensor is left over, so a wrong ``--model`` or
``--num_classes`` fails with one line naming the offending keys.

Needs PyTorch (``pip install torch``, or the ``torch`` extra of this package) to read ``.pth``
files; the rest of figkd_jax does not.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from figkd_jax import models
from figkd_jax.io import storage
from figkd_jax.trainer import checkpoints

# Image shape of the dummy input that sizes the parameter tree when no dataset is given; only
# the channel count matters for the parameter shapes.
DEFAULT_IMAGE_SHAPE = (32, 32, 3)
_MAX_LISTED = 8
_DATA_PARALLEL_PREFIX = "module."
_BATCH_STATS_LEAVES = {"running_mean": "mean", "running_var": "var"}
_IGNORED_LEAVES = {"num_batches_tracked"}


def flax_path(key: str, ndim: int) -> tuple[str, ...] | None:
    """The Flax path ``(collection, module..., leaf)`` of PyTorch state-dict entry ``key``.

    ``ndim`` is the tensor's rank, which tells a conv / linear ``weight`` (``kernel``) from a
    BatchNorm one (``scale``). None for entries without a Flax counterpart by design
    (``num_batches_tracked``). Example: ``("layer2.0.downsample.1.running_var", 1)`` ->
    ``("batch_stats", "layer2_0", "downsample_1", "var")``.
    """
    merged: list[str] = []
    for part in key.split("."):
        if part.isdigit() and merged:
            merged[-1] = f"{merged[-1]}_{part}"
        else:
            merged.append(part)
    *modules, leaf = merged
    if leaf in _IGNORED_LEAVES:
        return None
    if leaf in _BATCH_STATS_LEAVES:
        return ("batch_stats", *modules, _BATCH_STATS_LEAVES[leaf])
    if leaf == "weight":
        return ("params", *modules, "kernel" if ndim in (2, 4) else "scale")
    return ("params", *modules, leaf)


def to_flax_layout(array: np.ndarray) -> np.ndarray:
    """A PyTorch tensor in Flax layout: conv (O, I/g, kh, kw) -> (kh, kw, I/g, O), linear
    (O, I) -> (I, O), vectors unchanged; always float32."""
    array = np.asarray(array, np.float32)
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:
        return array.T
    return array


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def convert_state_dict(state_dict: Mapping[str, np.ndarray], abstract_variables: Any) -> dict:
    """The Flax ``{"params", "batch_stats"}`` holding the tensors of a PyTorch ``state_dict``.

    ``state_dict``: PyTorch key -> array (numpy or anything ``np.asarray`` reads).
    ``abstract_variables``: the target tree (``jax.eval_shape`` of ``model.init``). Every leaf
    must be filled exactly once with its shape and every tensor used; otherwise a one-line
    ValueError lists the PyTorch keys without a Flax counterpart (or mapping onto an already
    filled leaf), the Flax leaves left unfilled and the shape mismatches.
    """
    expected = {
        path: leaf.shape for path, leaf in traverse_util.flatten_dict(abstract_variables).items()
    }
    filled: dict[tuple[str, ...], np.ndarray] = {}
    unused: list[str] = []
    mismatched: dict[tuple[str, ...], str] = {}
    for key, tensor in state_dict.items():
        path = flax_path(key, np.ndim(tensor))
        if path is None:
            continue
        if path not in expected or path in filled or path in mismatched:
            unused.append(key)
            continue
        array = to_flax_layout(tensor)
        if array.shape != tuple(expected[path]):
            mismatched[path] = (
                f"{key} {tuple(np.shape(tensor))} -> {'/'.join(path)} {tuple(expected[path])}"
            )
            continue
        filled[path] = array
    unfilled = ["/".join(p) for p in expected if p not in filled and p not in mismatched]
    problems = []
    if unused:
        problems.append(f"{len(unused)} PyTorch keys without a Flax counterpart: {_listed(unused)}")
    if unfilled:
        problems.append(f"{len(unfilled)} Flax leaves not filled: {_listed(unfilled)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_listed(list(mismatched.values()))}")
    if problems:
        raise ValueError("; ".join(problems))
    return traverse_util.unflatten_dict(filled)


def infer_num_classes(state_dict: Mapping[str, np.ndarray]) -> int:
    """Output width of the classifier: the only linear (2-D) weight of every zoo model but
    ``mobilenetv2_tin``, whose classifier is a 1x1 conv, the last weight of its state dict."""
    linear = [k for k, v in state_dict.items() if k.endswith("weight") and np.ndim(v) == 2]
    if not linear:
        weights = [k for k in state_dict if k.endswith("weight")]
        last = np.shape(state_dict[weights[-1]]) if weights else ()
        if len(last) == 4 and last[2:] == (1, 1):
            return int(last[0])
    if len(linear) != 1:
        raise ValueError(
            f"cannot infer num_classes: expected one linear weight, found {len(linear)} "
            f"({_listed(linear)}); pass --num_classes"
        )
    return int(np.shape(state_dict[linear[0]])[0])


def strip_data_parallel_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` without the ``module.`` prefix that ``nn.DataParallel`` adds."""
    return {k.removeprefix(_DATA_PARALLEL_PREFIX): v for k, v in state_dict.items()}


def load_torch_state_dict(path: str, *, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    """The float32 numpy state dict of a ``.pth`` file: its ``"model"`` entry (mdistiller,
    RepDistiller) or the file itself when it is a bare state dict; ``module.`` prefixes removed.

    Loads with ``weights_only=True`` (no code from the file runs) unless ``trust_pickle``.
    """
    try:
        import torch
    except ImportError:
        raise ImportError(
            "reading PyTorch checkpoints needs torch: pip install torch (or the figkd_jax[torch] "
            "extra)"
        ) from None
    source = storage.path(path)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        loaded = torch.load(
            io.BytesIO(source.read_bytes()), map_location="cpu", weights_only=not trust_pickle
        )
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... by version.
        hint = "" if trust_pickle else " (if you trust the file, retry with --trust_pickle)"
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {e}{hint}") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        kind = sorted(loaded) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(
            f"{path} is neither a state dict nor a dict with a state dict under 'model' "
            f"(found {kind})"
        )
    return strip_data_parallel_prefix(
        {k: v.detach().to(torch.float32).numpy() for k, v in loaded.items()}
    )


def convert(
    checkpoint: str,
    model: str,
    out: str,
    *,
    num_classes: int | None = None,
    dataset: str | None = None,
    trust_pickle: bool = False,
) -> str:
    """Writes the PyTorch ``checkpoint`` of a ``model`` as a teacher checkpoint directory.

    ``num_classes``: default, the classifier's output width. ``dataset``: a
    ``figkd_jax.data`` name; sets the input channels, is checked against ``num_classes`` and
    recorded. Returns ``out``, which ``config.teacher.checkpoint`` accepts (step 0; meta
    ``model``, ``num_classes``, ``source``, ``source_sha256`` and ``dataset`` if given).
    """
    if model not in models.names():
        raise ValueError(f"unknown --model {model!r}; valid names: {', '.join(models.names())}")
    out_dir = storage.path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"--out {out!r} exists and is not empty; choose a new directory")
    state_dict = load_torch_state_dict(checkpoint, trust_pickle=trust_pickle)
    if num_classes is None:
        num_classes = infer_num_classes(state_dict)
    image_shape = DEFAULT_IMAGE_SHAPE
    meta: dict[str, Any] = {}
    if dataset is not None:
        from figkd_jax import data

        info = data.get_info(dataset)
        if info.num_classes != num_classes:
            raise ValueError(
                f"--dataset {dataset} has {info.num_classes} classes, but the checkpoint's "
                f"classifier has {num_classes}"
            )
        image_shape = info.image_shape
        meta["dataset"] = info.name
    flax_model = models.create(model, num_classes=num_classes)
    abstract_variables = jax.eval_shape(
        lambda: flax_model.init(
            jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32), train=False
        )
    )
    try:
        variables = convert_state_dict(state_dict, abstract_variables)
    except ValueError as e:
        raise ValueError(
            f"{checkpoint} is not a {model} with {num_classes} classes (check --model and "
            f"--num_classes): {e}"
        ) from None
    sha256 = _sha256(checkpoint)
    meta.update(
        model=model,
        num_classes=num_classes,
        source=str(storage.path(checkpoint)),
        source_sha256=sha256,
        step=0,
    )
    mngr = checkpoints.manager(out, best_metric=None)
    checkpoints.save(mngr, step=0, variables=variables, meta=meta)
    mngr.close()
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.tools.convert_torch",
        description="Convert a PyTorch checkpoint of a reference model into a figkd_jax "
        "teacher checkpoint directory (for config.teacher.checkpoint).",
    )
    parser.add_argument(
        "checkpoint", help=".pth file: a state dict, or a dict with it under 'model'"
    )
    parser.add_argument(
        "--model",
        required=True,
        choices=models.names(),
        metavar="NAME",
        help="figkd_jax.models name, e.g. resnet32x4",
    )
    parser.add_argument("--out", required=True, help="new checkpoint directory to write")
    parser.add_argument(
        "--num_classes", type=int, default=None, help="default: the classifier's output width"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="figkd_jax.data name (e.g. cifar100): input channels, class check",
    )
    parser.add_argument(
        "--trust_pickle",
        action="store_true",
        help="load with torch.load(weights_only=False): runs code from the file",
    )
    args = parser.parse_args(argv)
    try:
        out = convert(
            args.checkpoint,
            args.model,
            args.out,
            num_classes=args.num_classes,
            dataset=args.dataset,
            trust_pickle=args.trust_pickle,
        )
    except (ValueError, FileNotFoundError, ImportError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"wrote {args.model} teacher checkpoint to {out}")


if __name__ == "__main__":
    main()
