"""The command line the test workers share: their positional paths, then the distributed
runtime's flags. jax is imported only to join the runtime, after the flags are parsed, so
that a worker's environment (device count, platform) is set before jax starts."""

import argparse


def parse(*positional: str, configure=None) -> argparse.Namespace:
    """Parses `positional` names and ``--coordinator HOST:PORT --num_processes P
    --process_id I``; `configure(parser)` adds a worker's own flags."""
    parser = argparse.ArgumentParser()
    for name in positional:
        parser.add_argument(name)
    if configure is not None:
        configure(parser)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    return parser.parse_args()


def join_runtime(args: argparse.Namespace) -> None:
    """Joins the distributed runtime when a coordinator is given (else one process alone)."""
    if args.coordinator:
        import jax

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
