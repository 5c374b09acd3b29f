"""Planted-bug benchmark and paper reproductions, driven through the workflow."""
