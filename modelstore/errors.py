"""Errors raised by modelstore.

Every error is a :class:`ModelstoreError`; messages name the offending object and what was expected.

::

    ModelstoreError
     ├── ServerError            the embedded PostgreSQL could not be found, initialised, started, stopped
     ├── MigrationError         the catalog schema could not be brought up to date
     ├── InputError             a request that cannot be answered as asked (nothing is written)
     │    ├── UnknownTableError      the table or view does not exist (or is not visible)
     │    ├── UnknownColumnError     a column named in the request does not exist
     │    ├── ColumnTypeError        a feature/target/ordering column of the wrong type
     │    ├── RangeError             lo > hi, a bound of the wrong type, or an empty range
     │    ├── FilterError            a residual filter that does not parse or is not a plain predicate
     │    ├── NonFiniteValueError    NaN or ±Infinity in the selected rows
     │    ├── TooManyClassesError    a class column with more distinct values than allowed
     │    ├── PrivilegeError         the current role may not read a table or column the request needs
     │    └── DeploymentError        a deployment that cannot be made or changed as asked (docs/deployments.md)
     │         ├── WindowError            an unknown window unit, a time window on a non-time column, 0 rows
     │         ├── SourceKindError        a deployment over a view, materialized view, foreign or sharded table
     │         ├── NotDeployedError       no deployment of that name (a plain model, or nothing)
     │         ├── ObservationError       observed rows that cannot be written as given (count, type, filter)
     │         └── VersionNotFoundError   a deployment has no such version
     ├── SingularMatrixError    XᵀX is singular without a ridge penalty (names the collinear columns)
     ├── ModelNotFoundError     no stored model of that name
     └── ShardUnavailableError  a shard (a foreign partition's server) the request reads cannot be reached
"""

from __future__ import annotations


class ModelstoreError(Exception):
    """Base class of every error modelstore raises."""


class ServerError(ModelstoreError):
    """The embedded PostgreSQL could not be found, initialised, started or stopped."""


class MigrationError(ModelstoreError):
    """The catalog schema could not be brought up to date."""


class InputError(ModelstoreError, ValueError):
    """A model request that cannot be answered as asked; nothing has been written."""


class UnknownTableError(InputError):
    """The table or view does not exist, or the current role cannot see it."""


class UnknownColumnError(InputError):
    """A column named in the request does not exist in the table."""


class ColumnTypeError(InputError):
    """A column of a type the request cannot use (e.g. a text feature)."""


class RangeError(InputError):
    """The requested range is malformed (lo > hi, wrong type) or selects no rows."""


class FilterError(InputError):
    """The residual filter does not parse, or is not a plain row predicate."""


class NonFiniteValueError(InputError):
    """The selected rows contain NaN or ±Infinity, which no model can be fitted on."""


class TooManyClassesError(InputError):
    """The class column has more distinct values than the model kind allows."""


class PrivilegeError(InputError, PermissionError):
    """The current role lacks a privilege the request needs (SELECT on a column, TRIGGER to keep stored
    statistics fresh); the message names the object and the privilege."""


class DeploymentError(InputError):
    """A deployment that cannot be made or changed as asked; nothing has been written."""


class WindowError(DeploymentError):
    """A window that is not every row, a positive row count, or an interval of a known unit on a date or
    timestamp ordering column."""


class SourceKindError(DeploymentError):
    """Deployments follow ordinary tables only (their writes are captured by triggers)."""


class SamplingError(DeploymentError):
    """A proactive-training sample that cannot be drawn as asked (more chunks than exist, a budget
    smaller than one chunk, an unknown sampler; docs/continuous.md)."""


class NotDeployedError(DeploymentError, LookupError):
    """No deployment has that name (it may be a plain model)."""


class ObservationError(DeploymentError):
    """Observed rows that cannot be written to a deployment's table as given: a wrong number of values,
    a non-numeric or NULL value, a label count that does not match, a row the deployment's filter
    rejects, no ordering value; nothing has been written."""


class VersionNotFoundError(DeploymentError, LookupError):
    """The deployment has no version of that number."""


class SingularMatrixError(ModelstoreError, ArithmeticError):
    """XᵀX is singular (collinear or constant features) and no ridge penalty was given."""

    def __init__(self, message: str, collinear: list[str] | None = None):
        super().__init__(message)
        #: the columns found to be (near) linear combinations of the others
        self.collinear = list(collinear or [])


class ModelNotFoundError(ModelstoreError, LookupError):
    """No stored model has that name."""


class ShardUnavailableError(ModelstoreError, ConnectionError):
    """A shard the request reads (the server of a foreign partition) cannot be reached; nothing was stored
    (docs/scale-out.md)."""

    def __init__(self, message: str, server: str | None = None, partitions: list[str] | None = None):
        super().__init__(message)
        #: the foreign server's name, and the partitions of the table that live on it
        self.server = server
        self.partitions = list(partitions or [])


class PlanNoteWarning(UserWarning):
    """modelstore did something the request may not have meant; the same text is a ``Note:`` of the plan."""
