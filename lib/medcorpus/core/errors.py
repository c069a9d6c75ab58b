"""Fatal errors: each carries a one-line message that says what to do.

Per-record problems are not errors: they become rows of the ``quarantine`` table (schemas/quarantine.json),
written by the stage that met them (ingest's readers, normalize, sft; see :class:`medcorpus.core.stage.Stage`).
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
