"""The t-SNE latent explorer: training codes against adversarial codes, click for a decode.

* :mod:`~defuse_widgets.widgets.latent_explorer.explorer`: the :class:`LatentExplorer` widget;
* :mod:`~defuse_widgets.widgets.latent_explorer.figure`: its plotly map and its traces;
* :mod:`~defuse_widgets.widgets.latent_explorer.points`: decodes and captions of points;
* :mod:`~defuse_widgets.widgets.latent_explorer.slices`: the saved-slice controls;
* :mod:`~defuse_widgets.widgets.latent_explorer.map_fitting`: the t-SNE fit with its
  progress bar and Stop.
"""
from defuse_widgets.widgets.latent_explorer.explorer import LatentExplorer

__all__ = ["LatentExplorer"]
