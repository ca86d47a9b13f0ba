"""Datamodules serving functions as ``(coords [B, N, d], values [B, N, c])`` batches."""

from .base import FunctionDataModule, PointDataset
from .files import FileDataModule
from .grf import GRFDataModule
from .manifold import EarthDataModule, ManifoldMixtureDataModule
from .mnist import MNISTDataModule, load_mnist_idx, resolve_data_root
from .procedural import (
    ProceduralDataset,
    ProceduralImageDataModule,
    evaluate_blobs,
    evaluate_shapes,
    sample_blob_params,
    sample_shape_params,
)
from .su3 import SU3WilsonDataModule

__all__ = [
    "FunctionDataModule",
    "FileDataModule",
    "PointDataset",
    "GRFDataModule",
    "EarthDataModule",
    "ManifoldMixtureDataModule",
    "SU3WilsonDataModule",
    "ProceduralImageDataModule",
    "ProceduralDataset",
    "evaluate_blobs",
    "evaluate_shapes",
    "sample_blob_params",
    "sample_shape_params",
    "MNISTDataModule",
    "load_mnist_idx",
    "resolve_data_root",
]
