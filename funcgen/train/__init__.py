"""Training: the one LightningModule, safe checkpoint IO, experiment tracking and :func:`fit`."""

from .checkpoint import SafeCheckpointIO
from .module import GenerativeModule

__all__ = ["GenerativeModule", "SafeCheckpointIO"]
