"""The model language: BigQuery ML's MODEL statements, parsed with sqlglot, run on PostgreSQL.

``store.query(text)`` (Python), ``modelstore query`` (CLI) and ``modelstore.query(text)`` (SQL, where
PL/Python is available) all come here. Modules: :mod:`.dialect` (the grammar), :mod:`.statements`
(parsed statements), :mod:`.where` (WHERE → descriptor), :mod:`.scoring` (predictions as SQL),
:mod:`.functions` (the ML table functions), :mod:`.runner` (running them). docs/language.md has the
reference.
"""

from modelstore.language.runner import describe, run, run_statement, statement_label
from modelstore.language.statements import LanguageError, parse

__all__ = ["LanguageError", "describe", "parse", "run", "run_statement", "statement_label"]
