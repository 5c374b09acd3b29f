"""The planted-bug benchmark's harness: bugs planted in real data, their scores, and the
peer methods run on them. It drives the package through its public API and ships with the
repository, not in the wheel (the peers themselves, debiasing and the paper reproductions
stay in :mod:`defuse_widgets.evaluation`).
"""
