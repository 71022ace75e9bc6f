"""The error types users see. The CLI turns any of them into one line and a non-zero exit."""


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
