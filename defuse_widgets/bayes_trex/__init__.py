"""Bayes-TrEx level sets: samples of the latent space at a target confidence."""
from defuse_widgets.bayes_trex.domain_shift import DomainShiftCheck
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler
from defuse_widgets.bayes_trex.targets import Target

__all__ = ["DomainShiftCheck", "LevelSetSampler", "Target"]
