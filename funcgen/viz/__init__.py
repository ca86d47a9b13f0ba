"""Pictures of point sets: image grids, curves, sphere and mesh renders, PNG and HTML output."""

from .plotting import curve_plot, image_grid, manifold_plot, render, save_png, write_summary_html

__all__ = ["image_grid", "curve_plot", "manifold_plot", "render", "save_png", "write_summary_html"]
