"""Former name of :mod:`defuse_widgets.session`, kept so existing imports keep working."""
from .session import Session, correction_data, identify_in_steps, map_subset  # noqa: F401

__all__ = ["Session", "correction_data", "identify_in_steps", "map_subset"]
