"""The reasoning router: which queries reason (learned each night, shipped with the model)."""
