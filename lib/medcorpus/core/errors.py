"""Fatal errors: each carries a one-line message that says what to do.

Per-record problems are not errors: they become quarantine rows (see ``medcorpus.quarantine``).
"""


class MedcorpusError(Exception):
    """Base class; the CLI prints ``error: <message>`` and exits 2 for these."""


class ConfigError(MedcorpusError):
    """A bad config key or value."""


class InputError(MedcorpusError):
    """A missing or unreadable input path."""


class TableMissingError(MedcorpusError):
    """A stage needs a table that no earlier stage wrote."""


class ValidationFailed(MedcorpusError):
    """A critical data-quality expectation failed."""
