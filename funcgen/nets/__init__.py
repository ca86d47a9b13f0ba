"""Backbones: networks ``(coords [B,N,d], values [B,N,c_in], t [B]) -> [B,N,c_out]`` on point sets."""

from funcgen.nets.autoencoder import GridAutoencoder
from funcgen.nets.base import Backbone, FourierFeatures, TimeEmbedding
from funcgen.nets.branch_trunk import BranchTrunkNet, BranchTrunkPerceiverNet
from funcgen.nets.inr import AdaptiveINR, SirenNet
from funcgen.nets.manifold import ManifoldMLP
from funcgen.nets.perceiver import PerceiverNet
from funcgen.nets.sno import SparseNeuralOperator

__all__ = ["Backbone", "PerceiverNet", "BranchTrunkPerceiverNet", "BranchTrunkNet", "SirenNet", "AdaptiveINR",
           "ManifoldMLP", "SparseNeuralOperator", "GridAutoencoder", "FourierFeatures", "TimeEmbedding"]
