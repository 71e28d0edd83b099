"""qorus-core: a minimal deep-learning core for CPUs.

The public API: layers and containers, models compiled to planned arenas, the kernel
dispatch, the plugin hooks, training and model IO. Plugins import from here only.
"""

from . import ops
from .arena import check_alloc
from .containers import Residual, Sequential
from .errors import (
                     CheckpointError,
                     ConfigError,
                     DataError,
                     KernelError,
                     NumericsError,
                     QorusError,
                     RegistryError,
                     ShapeError,
)
from .functional import Functional, Input, Node
from .graph import LayerBuilder
from .hookspecs import hookimpl
from .kernels import get_kernels
from .kernels.numpy_quant import QWeight, to_float32
from .layer import Composite, Layer, LayerCtx, layer_from_dict, layer_to_dict
from .model import Model
from .plan import RunState
from .registry import get_layer, get_registry
from .replay import Replay, ReplayError
from .replay import record as record_plan
from .sequence import Sequence
from .shapes import param_shapes
from .states import StateStore
from .tensor import Spec, Tensor

__version__ = "0.1.0"

__all__ = [
    "Layer", "Composite", "LayerCtx", "LayerBuilder", "Sequential", "Residual", "Model", "Sequence", "Spec",
    "Tensor", "Input", "Node", "Functional", "ops",
    "get_kernels", "get_registry", "get_layer", "hookimpl", "layer_from_dict", "layer_to_dict",
    "QorusError", "ShapeError", "ConfigError", "RegistryError", "KernelError",
    "CheckpointError", "DataError", "NumericsError", "__version__",
    # what plugins used to reach into private modules for (the import contracts hold them to
    # this surface: pyproject.toml [tool.importlinter])
    "QWeight", "to_float32", "param_shapes", "check_alloc", "Replay", "ReplayError", "record_plan",
    "RunState", "StateStore",
]
