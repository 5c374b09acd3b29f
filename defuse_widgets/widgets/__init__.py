"""Jupyter widgets for each Defuse stage (ipywidgets 8 + plotly FigureWidget).

The widgets take fitted core objects and compute nothing themselves; the core
(everything outside this package) never imports them.
"""
from .ambiguity_matrix import AmbiguityMatrix
from .dashboard import DefuseDashboard
from .label_review_panel import LabelReviewPanel
from .labeling_panel import LabelingPanel
from .latent_explorer import LatentExplorer
from .region_gallery import RegionGallery
from .tradeoff_plot import TradeoffPlot

__all__ = ["AmbiguityMatrix", "DefuseDashboard", "LabelReviewPanel", "LabelingPanel", "LatentExplorer",
           "RegionGallery", "TradeoffPlot"]
