"""Build a dataset's TFDS records: ``python -m figkd_jax.data.prepare --dataset=NAME``.

TFDS catalogue datasets (cifar100, caltech_birds2011, stanford_dogs) are downloaded, which
needs the internet; ours (tiny_imagenet, mit67, stanford40) and TFDS's imagenet2012 (the
ILSVRC2012 train and val tars, downloaded after registering) read the archives named in
``figkd_jax.data.registry.SOURCES`` from the manual dir. digits needs nothing. A data dir on
Cloud Storage is prepared in its local mirror (``sources.mirror_dir``) and uploaded through
``figkd_jax.io.storage``, ``dataset_info.json`` last. The ``tfds
build`` command line does the same for the catalogue datasets where apache_beam is installed.
"""

import argparse
import os

from figkd_jax.data.registry import SOURCES, names


def prepare(data_config, num_shards: int | None = None) -> None:
    """Download (catalogue datasets) or read the manual files (ours) and write the records.

    ``num_shards``: record files per split (None: TFDS's choice by size). A streamed dataset
    (imagenet2012) gives each process its own files, so it needs at least as many train files
    as the largest run has processes.
    """
    import tensorflow_datasets as tfds

    from figkd_jax.data import sources
    from figkd_jax.io import storage

    config = sources.resolve(data_config)
    if SOURCES[config.name].kind == "embedded":
        return
    remote = config.data_dir if config.data_dir and storage.is_url(config.data_dir) else None
    manual_dir = config.manual_dir
    if remote:
        # Built in the local mirror and uploaded through `storage` (sources.mirror_dir says
        # why); the manual archives, when in the bucket too, are copied down first.
        manual_dir = manual_dir or f"{remote}/downloads/manual"
        if storage.is_url(manual_dir):
            local_manual = os.path.join(sources.mirror_dir(remote), "downloads", "manual")
            storage.copy_tree(manual_dir, local_manual)
            manual_dir = local_manual
    builder = tfds.builder(
        config.name, data_dir=sources.mirror_dir(remote) if remote else config.data_dir
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, num_shards=num_shards)
    )
    if remote:
        folder = sources.dataset_folder(builder)
        storage.copy_tree(
            f"{sources.mirror_dir(remote)}/{folder}",
            f"{remote}/{folder}",
            last=("dataset_info.json",),
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m figkd_jax.data.prepare",
        description="Build a dataset's TFDS records (digits needs nothing; the TFDS catalogue "
        "datasets are downloaded; tiny_imagenet, mit67 and stanford40 read the archives in the "
        "manual dir).",
    )
    parser.add_argument("--dataset", required=True, choices=names())
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument(
        "--manual_dir", default=None, help="manual downloads (default <data_dir>/downloads/manual)"
    )
    parser.add_argument(
        "--num_shards",
        type=int,
        default=None,
        help="record files per split (default: TFDS's choice); imagenet2012 streams one share "
        "of the train files to each process, so use at least the number of processes",
    )
    args = parser.parse_args(argv)
    if args.num_shards is not None and args.num_shards < 1:
        parser.error(f"--num_shards must be >= 1, got {args.num_shards}")
    from figkd_jax.data import sources

    config = sources.default_data_config(args.dataset)
    config.data_dir, config.manual_dir = args.data_dir, args.manual_dir
    prepare(config, args.num_shards)
    sources.check_prepared(config)
    print(f"{args.dataset} is prepared")


if __name__ == "__main__":
    main()
