"""Safe files: atomic writes, the manifest, the SQLite annotation stores and sweep checkpoints."""
