"""Data quality gates: Great Expectations suites for the raw data folder and the triplets.

The gates are imported lazily, so that the data loaders can raise
:class:`~components.validation.errors.DataFileError` without importing the gates.
"""

from components.validation.errors import DataFileError, DataValidationError

__all__ = ["DataFileError", "DataValidationError", "validate_raw", "validate_triplets"]


def __getattr__(name: str):
    if name in ("validate_raw", "validate_triplets"):
        from components.validation import suites

        return getattr(suites, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
