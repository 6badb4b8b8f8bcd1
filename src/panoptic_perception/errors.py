"""Exceptions whose message is meant for the user: they name what was wrong."""


class PerceptionError(Exception):
    """Base for every error caused by a bad input rather than by a bug."""


class ConfigError(PerceptionError):
    """A configuration file, parameter or CLI argument has a bad value."""


class InputError(PerceptionError):
    """An input image, message, dataset or file cannot be used."""


class ModelFileError(PerceptionError):
    """A model or checkpoint file is missing, unreadable or does not match its config."""
