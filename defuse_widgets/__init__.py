"""defuse_widgets: Defuse (Slack, Rauschmayr and Kenthapadi) as a tested library and Jupyter widgets."""
__version__ = "0.1.0"
