"""LREM pipeline: one subpackage per nightly step, plus the model and shared pieces."""
