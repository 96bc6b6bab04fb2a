"""The project's own exceptions: each message says what was wrong, where, and what to do."""


class GkdError(Exception):
    """Base class for every error a user can hit."""


class ConfigError(GkdError):
    """A config file or override is invalid (message names the key path)."""


class DataError(GkdError):
    """Source data violates its format (message names file, column and first bad row)."""


class GraphStoreError(GkdError):
    """The canonical graph store on disk is missing or inconsistent."""
