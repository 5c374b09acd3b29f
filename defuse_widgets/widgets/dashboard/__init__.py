"""The dashboard: every stage of one session in one widget, a tab per stage.

* :mod:`~defuse_widgets.widgets.dashboard.dashboard`: the :class:`DefuseDashboard` widget;
* :mod:`~defuse_widgets.widgets.dashboard.view`: its controls, tabs and status line
  (:class:`~defuse_widgets.widgets.dashboard.view.DashboardView`);
* :mod:`~defuse_widgets.widgets.dashboard.tabs`: what each tab shows of the session.
"""
from defuse_widgets.widgets.dashboard.dashboard import STAGES, DefuseDashboard

__all__ = ["STAGES", "DefuseDashboard"]
