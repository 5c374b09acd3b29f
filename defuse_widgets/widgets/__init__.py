"""Jupyter widgets for each Defuse stage (ipywidgets 8 + plotly FigureWidget).

The widgets take fitted core objects and compute nothing themselves; the core
(everything outside this package) never imports them.
"""
