"""One colour per method, the same in every figure (benchmark figures, notebooks, reports)."""

from __future__ import annotations

__all__ = ["METHOD_COLORS", "method_color", "REFERENCE_COLOR", "DATA_COLOR", "SAMPLE_COLOR"]

#: method name (as in ``funcgen bench --method``) -> colour (Okabe-Ito palette, readable for colour-blind readers)
METHOD_COLORS: dict[str, str] = {
    "fdp": "#0072B2",         # blue
    "ffm": "#E69F00",         # orange
    "pfgmpp": "#009E73",      # green
    "inftydiff": "#CC79A7",   # purple
    "ign": "#D55E00",         # vermillion
    "mdf": "#56B4E9",         # sky blue
    "riemannian": "#000000",  # black
}
#: floors and published references (dashed)
REFERENCE_COLOR = "#888888"
#: training data drawn beside samples
DATA_COLOR = "#555555"
#: generated points drawn beside the data
SAMPLE_COLOR = "#B2182B"
_SPARE = ("#8C564B", "#BCBD22", "#7F7F7F", "#17BECF", "#9467BD")


def method_color(method: str) -> str:
    """The method's colour; a method not in :data:`METHOD_COLORS` gets a spare colour fixed by its name."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _SPARE[sum(map(ord, method)) % len(_SPARE)]
