"""Domain errors. Each carries a message a user can act on; the CLI prints it on one line."""

from __future__ import annotations


class EcomError(Exception):
    """Base class: an expected failure with a message that names what to fix."""

    exit_code = 1


class SettingsError(EcomError):
    """A setting is missing or has a wrong value; the message names the variable."""

    exit_code = 2


class DatabaseUnavailableError(EcomError):
    """The database cannot be reached or refuses the login."""


class SchemaNotInitialisedError(EcomError):
    """The database is up but `ecom db init` has not created the tables."""


class NotBuiltYetError(EcomError):
    """A CLI verb whose layer has not been built yet: never a fake success."""

    exit_code = 3


class LockBusyError(EcomError):
    """Another process holds the writer lock of a layer or table."""


class ValidationFailedError(EcomError):
    """A quality gate (checkpoint) failed; nothing was promoted."""


class SchemaDriftError(EcomError):
    """A source column was dropped or retyped."""
