"""sparsecc's model zoo: reference models, real-weight loaders and their data.

`names()` lists the registered models and `get(name, tiny=..., batch=..., seq=..., seed=...)` builds
one as a `ZooModel` (module in eval mode, example inputs, dynamic axes, calibration batches,
workload). Importing the package registers every model but imports neither transformers nor
mlxtend; those load when a model that needs them is built. `weights_missing(name)` says (one line)
why a model whose optional weights package is absent can't be built here, or None; `get` then
raises `WeightsUnavailable`.
"""

from . import llama, minilm, mnist, resnet, tinyllama  # noqa: F401  (registers the builders)
from .registry import (NeedsPackage, UnknownModelError, WeightsUnavailable, ZooModel, get, names,
                       needs, register, weights_missing)

__all__ = ["NeedsPackage", "UnknownModelError", "WeightsUnavailable", "ZooModel", "get", "names",
           "needs", "register", "weights_missing"]
