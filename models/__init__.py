"""sparsecc's model zoo: reference models, real-weight loaders and their data.

`names()` lists the registered models and `get(name, tiny=..., batch=..., seq=..., seed=...)` builds
one as a `ZooModel` (module in eval mode, example inputs, dynamic axes, calibration batches,
workload). Importing the package registers every model but imports neither transformers nor
mlxtend; those load when a model that needs them is built.
"""

from . import llama, minilm, mnist, resnet  # noqa: F401  (importing registers the builders)
from .registry import UnknownModelError, ZooModel, get, names, register

__all__ = ["UnknownModelError", "ZooModel", "get", "names", "register"]
