"""Data quality gates: Great Expectations suites for the raw data folder and the triplets."""

from components.validation.errors import DataValidationError
from components.validation.suites import validate_raw, validate_triplets

__all__ = ["DataValidationError", "validate_raw", "validate_triplets"]
