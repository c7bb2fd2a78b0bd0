"""facebalance: fair face-attribute models by balancing their training data."""

from facebalance.errors import FacebalanceError

__all__ = ["FacebalanceError", "__version__"]
__version__ = "0.1.0"
