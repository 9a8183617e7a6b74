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


class DataFileError(DataValidationError, ValueError):
    """A loader met a data file that breaks the data contract (docs/data-contract.md).

    Raised by :mod:`components.data.io` where a later step reads the data; names the file,
    the line (None for a whole-file problem) and the rule. A DataValidationError, so the
    task fails at once without retries; a ValueError for callers that catch those.
    """

    def __init__(self, file: str, line: int | None, rule: str, detail: str = "") -> None:
        where = f"{file}: line {line}" if line is not None else file
        message = f"{where}: {detail} -- {rule}" if detail else f"{where}: {rule}"
        failure = {"file": file, "expectation": "data_contract", "column": None, "description": rule,
                   "rows": [line] if line is not None else [], "unexpected_count": 1, "sample_values": [],
                   "message": message}
        super().__init__(message, [failure])
        self.file, self.line, self.rule, self.detail = file, line, rule, detail

    def __reduce__(self):
        return (type(self), (self.file, self.line, self.rule, self.detail))
