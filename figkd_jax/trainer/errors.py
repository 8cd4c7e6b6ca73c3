"""The trainer's error for a user's mistake, below every module that raises or catches it."""


class ConfigError(ValueError):
    """A config that cannot run; raised before anything is written."""
