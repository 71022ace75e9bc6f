"""mnistlab: a fast, reproducible lab for handwritten-digit recognition on PyTorch."""

from mnistlab.errors import MnistlabError

__version__ = "0.1.0"
__all__ = ["MnistlabError", "__version__"]
