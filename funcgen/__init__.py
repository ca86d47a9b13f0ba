"""funcgen: generative models on function spaces and manifolds (PyTorch + Lightning).

Every model consumes and produces coordinate-value point sets, so one trained model samples at
any resolution and on any query points. Start with ``funcgen demo`` or :func:`funcgen.load`.
"""

from .generator import FunctionGenerator, load  # noqa: E402
from .io import VERSION as __version__  # noqa: E402
from .pointset import PointSet, grid_coords, query_coords  # noqa: E402

__all__ = ["__version__", "FunctionGenerator", "load", "PointSet", "grid_coords", "query_coords"]
