"""modelstore: materialized, reusable machine-learning models over PostgreSQL.

(The doctests skip this example: it needs a server and a ``sales`` table.)

>>> import modelstore
>>> store = modelstore.connect()  # MODELSTORE_DSN, DATABASE_URL, or the embedded server  # doctest: +SKIP
>>> m = store.fit("linear", table="sales", target="revenue", features=["price", "promo"],  # doctest: +SKIP
...               order_by="id", lo=1, hi=50_000)
>>> m.coef_, m.summary(), print(m.plan)  # doctest: +SKIP
"""

from modelstore.errors import (
    ColumnTypeError, FilterError, InputError, MigrationError, ModelNotFoundError, ModelstoreError,
    NonFiniteValueError, PlanNoteWarning, PrivilegeError, RangeError, ServerError, ShardUnavailableError, SingularMatrixError,
    TooManyClassesError, UnknownColumnError, UnknownTableError,
)
from modelstore.language import LanguageError
from modelstore.store import Store, connect

__version__ = "0.1.0"

__all__ = [
    "ColumnTypeError", "FilterError", "InputError", "LanguageError", "MigrationError", "ModelNotFoundError", "ModelstoreError",
    "NonFiniteValueError", "PlanNoteWarning", "PrivilegeError", "RangeError", "ServerError", "ShardUnavailableError",
    "SingularMatrixError", "Store", "TooManyClassesError",
    "UnknownColumnError", "UnknownTableError", "__version__", "connect",
]
