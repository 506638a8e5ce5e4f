"""The one error type users see: a clear, specific, one-line message."""


class WorkbenchError(Exception):
    """A problem caused by the user's input (file, name, plan, data), not a bug.

    The CLI prints ``str(error)`` on one line and exits 2; the GUI shows it in a dialog.
    """


class PlanError(WorkbenchError):
    """The fine-tuning plan cannot be applied (unknown paths, bad values)."""


class ModelLoadError(WorkbenchError):
    """A model could not be loaded (missing file, corrupt file, unknown name)."""


class ProjectError(WorkbenchError):
    """The project file is missing, unreadable or has a bad value."""


class DataError(WorkbenchError):
    """The training data is missing, unreadable or does not fit the model (a table's width, its labels)."""


class TrainingError(WorkbenchError):
    """Training stopped because of its input or numbers (NaN loss, out of memory, mismatched data)."""


class DiskFullError(WorkbenchError):
    """A write failed because the file system is full (or over quota); the message names the path and free space."""
