"""What the benchmarks share: loading the spec they measure, and refusing, with one line and exit
status 2, what they cannot measure (a bad spec, a GPU spec on a machine without one)."""

from __future__ import annotations

import sys
import typing
from pathlib import Path


def refuse(why: str) -> typing.NoReturn:
    print(f"{Path(sys.argv[0]).stem}: {why}", file=sys.stderr)
    sys.exit(2)


def load_bench_spec(path: str):
    """The spec at `path`, or a refusal naming what is wrong with it."""
    from raysweep.spec import SpecError
    from raysweep.spec_loader import load_spec

    try:
        spec = load_spec(path)
    except SpecError as err:
        refuse(" ".join(str(err).split()))
    if spec.resources.use_gpu:
        import torch

        if not torch.cuda.is_available():
            refuse(f"{path} asks for GPUs (resources.use_gpu: true) and this machine has none; "
                   f"set it to false to measure on the CPU")
    return spec
