"""The one error the dataset layer raises for anything wrong on disk."""

from __future__ import annotations

from pathlib import Path

from embodied.types import SpecMismatchError


class DatasetError(Exception):
    """A dataset file is missing, damaged or inconsistent.

    The message names the file (also kept in `path`) and says what to do;
    callers never see a bare traceback from inside pyarrow, PyAV or json.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class DatasetSpecError(DatasetError, SpecMismatchError):
    """Data written for one embodiment offered to a dataset made for another."""


def damaged(path: str | Path, what: str, err: BaseException, hint: str) -> DatasetError:
    """A DatasetError for a file that exists but cannot be read."""
    reason = f"{type(err).__name__}: {err}".strip()
    return DatasetError(f"{path}: {what} ({reason}). {hint}", path)


def missing(path: str | Path, hint: str) -> DatasetError:
    return DatasetError(f"{path}: file is missing. {hint}", path)
