"""The exceptions olmo_fn raises for bad input: each message names the file or field and the fix."""


class OlmoFnError(Exception):
    """Base class of olmo_fn's user-facing errors."""


class ConfigError(OlmoFnError, ValueError):
    """A configuration value is missing, inconsistent or does not fit what it is applied to."""


class DataError(OlmoFnError, ValueError):
    """A data file is missing, unreadable or malformed."""


class CheckpointError(OlmoFnError, ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model."""


class TrainingError(OlmoFnError, RuntimeError):
    """Training cannot go on (a non-finite loss or gradient norm); nothing from the bad step is kept."""
