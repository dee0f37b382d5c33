"""Errors users see. Each message says what was wrong, where, and what to do; the CLI prints it as one line."""


class MicromotionError(Exception):
    """Base class: an error with a message fit for a user, shown without a traceback."""


class CheckpointError(MicromotionError, ValueError):
    """A model file could not be read as what it was expected to be."""


class WeightsError(MicromotionError):
    """A registry entry could not be found, downloaded, verified or imported."""


class InputError(MicromotionError, ValueError):
    """A user input (image, video, option value, motion file) is unusable."""


class MissingDependencyError(MicromotionError, ImportError):
    """An optional dependency (dlib, open_clip, ...) is not installed; the message says what to install."""
