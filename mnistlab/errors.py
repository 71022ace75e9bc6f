"""The error types users see. The CLI turns any of them into one line and a non-zero exit."""

import difflib


class MnistlabError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, wrong value)."""


class DataError(MnistlabError):
    """A data file is missing, corrupt, truncated or does not match its checksum."""


class ConfigError(MnistlabError):
    """An unknown model, override key or a value of the wrong type."""


class RunError(MnistlabError):
    """A run record is missing, incomplete, or its weights do not fit its config."""


class ImageError(MnistlabError):
    """An image file that cannot be read: not an image, empty, truncated, or too large."""


def did_you_mean(name: str, choices: "list[str] | tuple[str, ...]") -> str:
    """' (did you mean 'x'?)' for the choice closest to a misspelt `name`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
