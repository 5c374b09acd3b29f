"""The λ-tradeoff plot: test against region accuracy over λ, updated while correction runs.

* :mod:`~defuse_widgets.widgets.tradeoff_plot.plot`: the :class:`TradeoffPlot` widget;
* :mod:`~defuse_widgets.widgets.tradeoff_plot.view`: its figure, hovers and choice lines;
* :mod:`~defuse_widgets.widgets.tradeoff_plot.progress`: the callbacks that report a
  running sweep to it.
"""
from defuse_widgets.widgets.tradeoff_plot.plot import TradeoffPlot

__all__ = ["TradeoffPlot"]
