"""Example apps (importable from the repo root as ``examples.<name>.app:app``)."""
