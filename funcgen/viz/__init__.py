"""Pictures of point sets: image grids, curves, sphere and mesh renders, PNG and HTML output."""

from .plotting import curve_plot, image_grid, render, save_png, write_summary_html

__all__ = ["image_grid", "curve_plot", "render", "save_png", "write_summary_html"]
