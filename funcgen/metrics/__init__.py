"""Sample-quality metrics (see docs/protocol.md)."""

from .distances import (
                        coverage,
                        coverage_mmd,
                        energy_distance,
                        median_bandwidth,
                        min_matching_distance,
                        mmd2,
                        pairwise_sq_distances,
)
from .frechet import feature_frechet_distance, fit_gaussian, frechet_distance
from .lenet import (
                        LeNet,
                        area_downsample,
                        fd_lenet,
                        get_lenet,
                        lenet_confident_fraction,
                        lenet_features,
)
from .moments import covariance_error, mean_error, moment_report, variance_error
from .spectrum import power_spectrum, radial_power_spectrum, spectrum_error

__all__ = ["covariance_error", "mean_error", "variance_error", "moment_report",
           "pairwise_sq_distances", "median_bandwidth", "mmd2", "energy_distance",
           "coverage", "min_matching_distance", "coverage_mmd",
           "power_spectrum", "radial_power_spectrum", "spectrum_error",
           "fit_gaussian", "frechet_distance", "feature_frechet_distance",
           "LeNet", "get_lenet", "lenet_features", "lenet_confident_fraction", "area_downsample", "fd_lenet"]
