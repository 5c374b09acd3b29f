"""Jupyter widgets for each Defuse stage (ipywidgets 8 + plotly FigureWidget).

The widgets take fitted core objects and compute nothing themselves; the core
(everything outside this package) never imports them.
"""
from defuse_widgets.widgets.ambiguity_matrix import AmbiguityMatrix
from defuse_widgets.widgets.dashboard import DefuseDashboard
from defuse_widgets.widgets.label_review_panel import LabelReviewPanel
from defuse_widgets.widgets.labeling_panel import LabelingPanel
from defuse_widgets.widgets.latent_explorer import LatentExplorer
from defuse_widgets.widgets.region_gallery import RegionGallery
from defuse_widgets.widgets.region_table import RegionTable
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot

__all__ = ["AmbiguityMatrix", "DefuseDashboard", "LabelReviewPanel", "LabelingPanel",
           "LatentExplorer", "RegionGallery", "RegionTable", "TradeoffPlot"]
