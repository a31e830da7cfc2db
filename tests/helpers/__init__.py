"""Test helpers shared across layers (feeding, frames, peers, workers)."""
