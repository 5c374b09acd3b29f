"""The inline labeling panel: vote on each region's review set, one sample or a grid at a time.

* :mod:`~defuse_widgets.widgets.labeling_panel.panel`: the :class:`LabelingPanel` widget;
* :mod:`~defuse_widgets.widgets.labeling_panel.navigation`: the labeling queue's controls
  (region menu, filters, next and previous);
* :mod:`~defuse_widgets.widgets.labeling_panel.view`: its HTML (status, decision, queue);
* :mod:`~defuse_widgets.widgets.labeling_panel.review_image`: the review sample, with zoom
  and contrast;
* :mod:`~defuse_widgets.widgets.labeling_panel.review_tiles`: the strip or grid of samples;
* :mod:`~defuse_widgets.widgets.labeling_panel.keys`: the keyboard shortcuts.
"""
from defuse_widgets.widgets.labeling_panel.panel import KEYS_HELP, LabelingPanel

__all__ = ["KEYS_HELP", "LabelingPanel"]
