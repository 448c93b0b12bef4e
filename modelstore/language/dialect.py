"""The model language's grammar: sqlglot's BigQuery dialect plus the BigQuery ML forms it lacks.

sqlglot already parses ``CREATE [OR REPLACE] MODEL … OPTIONS (…) AS SELECT …``, ``DROP MODEL`` and
``ML.PREDICT(MODEL m, (SELECT …))``. This dialect adds, by extending sqlglot's parser (no tokenizer
of our own):

- ``ML.EVALUATE(MODEL m [, (SELECT …) | TABLE t])``, ``ML.WEIGHTS(MODEL m)``,
  ``ML.ADVANCED_WEIGHTS(MODEL m)``, ``ML.TRAINING_INFO(MODEL m)`` as table functions;
- ``EXPLAIN CREATE MODEL …`` (BigQuery's tokenizer swallows EXPLAIN as an opaque command);
- ``SHOW MODELS``.
"""

from __future__ import annotations


from sqlglot import exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.tokens import TokenType


class MLFunction(exp.Expression, exp.Func):
    """``ML.<name>(MODEL m[, input])``: ``this`` the model's name, ``expression`` the input rows."""

    arg_types = {"this": True, "expression": False, "params_struct": False}


class MLEvaluate(MLFunction):
    pass


class MLWeights(MLFunction):
    pass


class MLAdvancedWeights(MLFunction):
    pass


class MLTrainingInfo(MLFunction):
    pass


class ExplainModel(exp.Expression):
    """``EXPLAIN CREATE MODEL …``: ``this`` is the CREATE MODEL statement."""

    arg_types = {"this": True}


class ShowModels(exp.Expression):
    arg_types = {}


ML_FUNCTIONS = {"EVALUATE": MLEvaluate, "WEIGHTS": MLWeights, "ADVANCED_WEIGHTS": MLAdvancedWeights,
                "TRAINING_INFO": MLTrainingInfo}


def _ml_or_function(name: str, expr_type: type):
    """Parse ``ML.<name>(MODEL m[, (SELECT …) | TABLE t][, STRUCT(…)])``; any other ``<name>(…)`` (a
    column function that happens to share the name) as an ordinary function call."""

    def parse(self):
        if not self._match_text_seq("MODEL"):
            return self.expression(exp.Anonymous(this=name, expressions=self._parse_csv(self._parse_lambda)))
        model = self._parse_table_parts()
        rows = params = None
        if self._match(TokenType.COMMA):
            if self._match(TokenType.STRUCT, advance=False):
                params = self._parse_bitwise()
            else:
                self._match_text_seq("TABLE")
                rows = self._parse_table()
                if self._match(TokenType.COMMA):
                    params = self._parse_bitwise()
        if not self._match(TokenType.R_PAREN, advance=False):
            self.raise_error(f"Expecting ) to close ML.{name}(MODEL …")
        return self.expression(expr_type(this=model, expression=rows, params_struct=params))

    return parse


class ModelQL(BigQuery):
    """BigQuery's dialect with the model language's extra statements and ML table functions."""

    class Tokenizer(BigQuery.Tokenizer):
        # EXPLAIN and SHOW are opaque commands in BigQuery's tokenizer (the rest of the statement becomes
        # one string); as ordinary keywords their statements can be parsed.
        KEYWORDS = {**BigQuery.Tokenizer.KEYWORDS, "EXPLAIN": TokenType.DESCRIBE}
        COMMANDS = BigQuery.Tokenizer.COMMANDS - {TokenType.SHOW}

    class Parser(BigQuery.Parser):
        FUNCTION_PARSERS = {
            **BigQuery.Parser.FUNCTION_PARSERS,
            **{name: _ml_or_function(name, cls) for name, cls in ML_FUNCTIONS.items()},
            "PREDICT": _ml_or_function("PREDICT", exp.Predict),
        }
        STATEMENT_PARSERS = {
            **BigQuery.Parser.STATEMENT_PARSERS,
            TokenType.DESCRIBE: lambda self: self._parse_explain(),
            TokenType.SHOW: lambda self: self._parse_show_models(),
        }

        def _parse_explain(self) -> exp.Expression:
            if self._prev.text.upper() != "EXPLAIN":
                return self._parse_describe()
            start = self._prev
            statement = self._parse_statement()
            if not (isinstance(statement, exp.Create) and str(statement.args.get("kind", "")).upper() == "MODEL"):
                self.raise_error("EXPLAIN is followed by CREATE MODEL …", start)
            return self.expression(ExplainModel(this=statement))

        def _parse_show_models(self) -> exp.Expression:
            if not self._match_text_seq("MODELS"):
                self.raise_error("the model language knows SHOW MODELS only")
            return self.expression(ShowModels())


def position(text: str, node: exp.Expression) -> tuple[int, int] | None:
    """(line, column), both from 1, where ``node`` starts in ``text``, when sqlglot recorded it."""
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    if not starts:
        return None
    start = min(starts)
    return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
