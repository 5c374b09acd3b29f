"""SharedFigureWidget: a box or lasso selection reaches the callbacks without a restyle echo."""
import numpy as np
import pytest
from plotly.basewidget import BaseFigureWidget

from defuse_widgets.widgets._plotly_shared import SharedFigureWidget


def _points_message(event: str, traces, points) -> dict:
    return {"new": {"event_type": event, "points": {
        "trace_indexes": traces, "point_indexes": points,
        "xs": [0.0] * len(points), "ys": [0.0] * len(points)},
        "device_state": None, "selector": None}}


@pytest.fixture
def figure(monkeypatch):
    """A three-trace figure, the restyle messages plotly would send, the selection callbacks."""
    sent, got = [], []
    monkeypatch.setattr(BaseFigureWidget, "_send_restyle_msg",
                        lambda self, data, trace_indexes=None, source_view_id=None:
                        sent.append(data))
    fig = SharedFigureWidget(data=[dict(type="scattergl", x=np.arange(5.0), y=np.arange(5.0))
                                   for _ in range(3)])
    for t in fig.data:
        t.on_selection(lambda trace, points, selector: got.append(list(points.point_inds)))
    return fig, sent, got


def test_a_selection_calls_back_and_keeps_its_record_without_messages(figure):
    fig, sent, got = figure
    fig._handler_js2py_pointsCallback(_points_message("plotly_selected", [0, 0, 2], [1, 3, 4]))
    assert got == [[1, 3], [], [4]]
    assert fig.data[0].selectedpoints == (1, 3) and fig.data[2].selectedpoints == (4,)
    assert sent == []   # no per-trace echo, each of which the page answers with a redraw
    assert not fig._quiet_selection


def test_other_restyles_still_reach_the_page(figure):
    fig, sent, got = figure
    fig._handler_js2py_pointsCallback(_points_message("plotly_selected", [1], [2]))
    fig.data[1].marker.color = "red"
    assert sent == [{"marker.color": ["red"]}]
