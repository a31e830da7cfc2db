"""Tiny worker scripts the worker tests start as real subprocesses (see tests/worker)."""
