"""The four Defuse stages: identification, distillation, labeling and correction, and what
each hands to the next.
"""
