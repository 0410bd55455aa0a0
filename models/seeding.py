"""Seeded construction shared by the zoo's builders.

Every random number in the zoo comes from a `torch.Generator` derived from (seed, stream name), never
from torch's global RNG, so building a model neither depends on nor disturbs the caller's RNG state.
Streams are independent: the "weights" stream does not depend on how many input samples the
"inputs" stream drew, so overriding the batch size leaves the weights unchanged.

Modules are constructed on the meta device and then given uninitialized CPU storage, which skips
PyTorch's default initialization: that default draws from the global RNG and, for a Llama-3-8B-sized
layer, would spend seconds on kaiming loops that the zoo's own seeded init then overwrites.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TypeVar

import torch

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def seeded_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one named stream of random numbers under `seed`."""
    mixed_seed = (seed * 1_000_003 + zlib.crc32(stream.encode())) % (2**63)
    return torch.Generator().manual_seed(mixed_seed)


def construct_uninitialized(factory: Callable[[], ModuleT]) -> ModuleT:
    """Run `factory` on the meta device and give the result uninitialized CPU storage.

    The caller must then set every parameter and buffer: the storage holds arbitrary bytes.
    """
    with torch.device("meta"):
        module = factory()
    return module.to_empty(device="cpu")

