"""qorus-layers-template: a starting point for third-party Qorus layer packages.

``PReLU`` is a primitive layer (own forward and backward); ``ResidualMLP`` a composite (built
from other layers, no backward to write). Both register under the namespace ``tpl``.
"""

from .blocks import ResidualMLP
from .prelu import PReLU

__all__ = ["PReLU", "ResidualMLP"]
__version__ = "0.1.0"
