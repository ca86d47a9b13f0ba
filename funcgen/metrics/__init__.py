"""Sample-quality metrics (see ../shared/BENCHMARKS.md)."""

from .moments import covariance_error, mean_error, variance_error, moment_report

__all__ = ["covariance_error", "mean_error", "variance_error", "moment_report"]
