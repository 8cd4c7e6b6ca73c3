"""Export a trained student: its variables alone, and a serialized inference function.

Usage::

    python -m figkd_jax.tools.export runs/resnet8x4_figkd --out exported/resnet8x4 [--which best]

``<out>`` becomes:

- a checkpoint directory in the layout of ``figkd_jax.trainer.checkpoints`` holding the student's
  ``{"params", "batch_stats"}`` and its meta, without optimiser state or teacher, so it can
  serve as ``config.teacher.checkpoint`` of another run, at the step number of the source;
- ``inference.jaxexport``: a ``jax.export`` serialization of ``images -> logits`` in eval mode,
  with the variables baked in as constants (the file is self-contained: no checkpoint, no
  figkd_jax needed to run it, only jax). ``images``: float32 (batch, H, W, C), already
  normalised as ``(pixels / 255 - mean) / std``; the batch size is symbolic, any batch works.
  Logits: float32 (batch, num_classes). Computed in the run's compute dtype (``config.dtype``),
  so the function reproduces the run's evaluation. Serialized for CPU and CUDA;
  ``load_inference(out)`` deserializes it;
- ``export.json``: model, num_classes, dataset, image_shape, normalisation mean / std, compute
  dtype, and step / epoch / top-1 / top-5 of the exported checkpoint (epoch and accuracies are
  null for a checkpoint saved mid-epoch).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from figkd_jax import data, models
from figkd_jax.io import storage
from figkd_jax.trainer import checkpoints

INFERENCE_FILE = "inference.jaxexport"
DESCRIPTION_FILE = "export.json"
PLATFORMS = ("cpu", "cuda")


def _read_run_config(workdir: str) -> dict[str, Any]:
    path = storage.path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: workdir must be a training run's workdir")
    return json.loads(path.read_text())


def _evaluation_of(meta: dict, step: int) -> dict[str, Any]:
    """Epoch and test accuracies recorded for ``step``; None where it was saved mid-epoch."""
    record = next((r for r in meta.get("history", []) if r["step"] == step), {})
    return {key: record.get(key) for key in ("epoch", "top1", "top5")}


def export_student(workdir: str, out: str, which: str = "last") -> str:
    """Writes the ``which`` ("last" / "best") checkpoint of the run in ``workdir`` to ``out``
    (see the module docstring for the contents). Both may be URLs. Returns ``out``."""
    out_dir = storage.path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"--out {out!r} exists and is not empty; choose a new directory")
    config = _read_run_config(workdir)
    directory = storage.path(workdir) / "checkpoints"
    step, meta = checkpoints.select(directory, which)
    info = data.get_info(config["dataset.name"])
    compute_dtype = config.get("dtype", "float32")
    model, variables = checkpoints.restore_model(
        directory,
        step,
        meta,
        image_shape=info.image_shape,
        dtype=models.compute_dtype(compute_dtype),
    )

    evaluation = _evaluation_of(meta, step)
    out_meta = {
        "model": meta["model"],
        "num_classes": meta["num_classes"],
        "dataset": info.name,
        "step": step,
        **evaluation,
        "source": str(storage.path(workdir)),
        "which": which,
    }

    def logits(images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    height, width, channels = info.image_shape
    batch_of_images = jax.ShapeDtypeStruct(
        jax.export.symbolic_shape(f"b, {height}, {width}, {channels}"), jnp.float32
    )
    # Lowered before anything is written, so a failure leaves no half-written directory.
    exported = jax.export.export(jax.jit(logits), platforms=PLATFORMS)(batch_of_images)
    mngr = checkpoints.manager(out, best_metric=None)
    checkpoints.save(mngr, step, variables=variables, meta=out_meta)
    mngr.close()
    storage.write_bytes(out_dir / INFERENCE_FILE, exported.serialize())

    description = {
        **out_meta,
        "image_shape": list(info.image_shape),
        "mean": list(info.mean),
        "std": list(info.std),
        "compute_dtype": compute_dtype,
        "inference_file": INFERENCE_FILE,
        "inference_platforms": list(PLATFORMS),
        "inference_signature": (
            "float32 images (batch, H, W, C) normalised as (pixels / 255 - mean) / std -> "
            "float32 logits (batch, num_classes), eval mode, variables baked in"
        ),
        "jax_version": jax.__version__,
    }
    storage.write_text(
        out_dir / DESCRIPTION_FILE, json.dumps(description, indent=2, sort_keys=True)
    )
    return out


def load_inference(out: str) -> Callable[[jax.Array], jax.Array]:
    """The exported ``images -> logits`` function of an ``export_student`` directory, jitted
    (compiled once per batch size). images: float32 (batch, H, W, C), normalised."""
    exported = jax.export.deserialize(bytearray((storage.path(out) / INFERENCE_FILE).read_bytes()))
    return jax.jit(exported.call)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.tools.export",
        description="Export a run's student (variables only, plus a serialized inference "
        "function) to a new directory.",
    )
    parser.add_argument("workdir", help="workdir of a training run")
    parser.add_argument("--out", required=True, help="new directory to write")
    parser.add_argument(
        "--which",
        choices=("last", "best"),
        default="last",
        help="the latest checkpoint, or the one with the best test top-1",
    )
    args = parser.parse_args(argv)
    try:
        out = export_student(args.workdir, args.out, args.which)
    except (ValueError, FileNotFoundError) as e:  # StorageError is a ValueError
        parser.exit(2, f"error: {e}\n")
    print(f"exported the {args.which} student of {args.workdir} to {out}")


if __name__ == "__main__":
    main()
