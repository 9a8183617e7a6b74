"""The exception of a data quality gate (importable without Great Expectations)."""

from __future__ import annotations

from pathlib import Path


class DataValidationError(Exception):
    """Data failed its expectation suites: not transient, so its task fails without retries.

    ``failures`` holds one dict per failed check (keys: file, expectation, column,
    description, rows, unexpected_count, sample_values, message); ``docs_index`` is the
    Data Docs index.html written for the run (None if docs could not be built).
    """

    def __init__(self, message: str, failures: list[dict] | None = None,
                 docs_index: Path | None = None, summary: dict | None = None) -> None:
        super().__init__(message)
        self.failures = list(failures or [])
        self.docs_index = docs_index
        self.summary = summary or {}

    @property
    def docs_dir(self) -> Path | None:
        return self.docs_index.parent if self.docs_index is not None else None

    def __reduce__(self):  # keep the structured fields when pickled across processes
        return (type(self), (self.args[0], self.failures, self.docs_index, self.summary))
