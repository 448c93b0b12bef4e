"""Model-language statements: parsed with sqlglot (:mod:`.dialect`) and checked into plain records.

Identifiers follow PostgreSQL, where the statements run: unquoted names fold to lower case, and
names with other characters are quoted with BigQuery's backticks (```My Table```). Strings are
single-quoted; a double-quoted "x" is a string, as in BigQuery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from modelstore.errors import InputError
from modelstore.families import MODEL_TYPES  # BigQuery ML's model_type → modelstore's kind, from each family
from modelstore.language.dialect import ExplainModel, MLFunction, ModelQL, ShowModels, position

#: OPTIONS a CREATE MODEL accepts (BigQuery's names where BigQuery has one) → fit() argument
OPTIONS = {"model_type": None, "input_label_cols": None, "order_by": None, "l2_reg": "l2",
           "chunk_rows": "chunk_rows", "var_smoothing": "var_smoothing", "alpha": "alpha",
           # living models (docs/deployments.md): refresh = 'continuous' deploys; the others configure it
           "refresh": "refresh", "window": "window", "window_anchor": "window_anchor", "strategy": "strategy",
           # per-group models (docs/serving.md): a model per value of a column, shrunk toward the global one
           "group_by": "group_by", "group_l2": "group_l2",
           # the SGD-trained kinds (docs/continuous.md)
           "l1_reg": "l1", "optimizer": "optimizer", "learn_rate": "learning_rate", "max_iterations": "epochs",
           "batch_size": "batch_size", "hash_buckets": "hash_buckets", "seed": "seed"}

#: the OPTIONS that only a deployment (refresh = 'continuous') takes
DEPLOY_OPTIONS = ("window", "window_anchor", "strategy")


class LanguageError(InputError):
    """A statement of the model language that does not parse or cannot run as written; the message
    starts with the line and column of the offending part when it is known."""

    def __init__(self, message: str, where: tuple[int, int] | None = None):
        self.line, self.column = where if where else (None, None)
        super().__init__(f"line {where[0]}, column {where[1]}: {message}" if where else message)


@dataclass(frozen=True)
class CreateModel:
    name: str
    kind: str
    table: str  # the table as PostgreSQL text, quoted ("schema"."table")
    label: str
    features: tuple[str, ...] | None  # None for SELECT *: every other column of the table
    order_by: str | None  # None: the table's single-column primary key
    where: exp.Expression | None
    params: dict = field(default_factory=dict)  # l2, chunk_rows, var_smoothing, alpha
    replace: bool = False
    text: str = ""
    node: exp.Expression | None = field(default=None, compare=False, repr=False)

    def error(self, message: str, node: exp.Expression | None = None) -> LanguageError:
        return LanguageError(message, position(self.text, node) if node is not None else None)


@dataclass(frozen=True)
class ExplainCreate:
    create: CreateModel


@dataclass(frozen=True)
class DropModel:
    name: str
    if_exists: bool


@dataclass(frozen=True)
class ShowModelsStatement:
    pass


@dataclass(frozen=True)
class Select:
    """A SELECT (over ML.PREDICT / ML.EVALUATE / … table functions, or plain): run read-only."""

    node: exp.Query
    text: str


def parse(text: str) -> list:
    """The statements of ``text`` (separated by semicolons), checked; LanguageError when one is bad."""
    if not isinstance(text, str) or not text.strip():
        raise LanguageError(f"a model-language statement must be non-empty text, got {text!r} instead")
    if "\x00" in text:
        at = text.index("\x00")
        raise LanguageError("a statement cannot contain a NUL character",
                            (text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)))
    try:
        trees = sqlglot.parse(text, read=ModelQL)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = (first["line"], first["col"]) if first.get("line") else None
        raise LanguageError(_readable(first.get("description") or str(exc)), where) from None
    except TokenError as exc:
        raise LanguageError(f"cannot read the statement: {_readable(str(exc))} (is a quote or backtick left "
                            f"open?)") from None
    statements = [_statement(normalize_identifiers(tree, dialect="postgres"), text) for tree in trees if tree is not None]
    if not statements:
        raise LanguageError("no statement to run")
    return statements


_TOKEN_REPR = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: \d+, col: \d+, start: \d+, "
                         r"end: \d+, comments: \[.*?\]>")
_CLASS_REPR = re.compile(r"<class 'sqlglot\.expressions(?:\.\w+)*\.(\w+)'>")


def _readable(message: str) -> str:
    """sqlglot's parse error without its internals: a token as its text, an expression class as its name."""
    message = _TOKEN_REPR.sub(lambda m: repr(m.group(1)), message)
    return _CLASS_REPR.sub(lambda m: m.group(1).upper(), message)


def _statement(tree: exp.Expression, text: str):
    if isinstance(tree, ExplainModel):
        return ExplainCreate(_create(tree.this, text))
    if isinstance(tree, exp.Create) and _kind(tree) == "MODEL":
        return _create(tree, text)
    if isinstance(tree, exp.Drop) and _kind(tree) == "MODEL":
        tables = tree.args.get("tables") or ([tree.this] if tree.this is not None else [])
        if len(tables) != 1:
            raise LanguageError("DROP MODEL drops one model at a time", position(text, tree))
        return DropModel(model_name(tables[0], text), bool(tree.args.get("exists")))
    if isinstance(tree, ShowModels):
        return ShowModelsStatement()
    if isinstance(tree, exp.Query):
        return Select(tree, text)
    what = type(tree).__name__.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
    raise LanguageError(
        f"{what} is not a model-language statement; the language runs CREATE [OR REPLACE] MODEL, EXPLAIN CREATE "
        "MODEL, DROP MODEL, SHOW MODELS and SELECT … FROM ML.PREDICT / ML.EVALUATE / ML.WEIGHTS / "
        "ML.ADVANCED_WEIGHTS / ML.TRAINING_INFO", position(text, tree))


def _kind(tree: exp.Expression) -> str:
    return str(tree.args.get("kind") or "").upper()


def model_name(node: exp.Expression, text: str) -> str:
    """A model's name from ``MODEL name`` (dotted parts joined by '.'; unquoted parts folded)."""
    if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
        raise LanguageError("a model is named by an identifier", position(text, node))
    parts = [p.name for p in node.parts] if isinstance(node, exp.Table) else [node.name]
    name = ".".join(parts)
    if not name:
        raise LanguageError("a model needs a name", position(text, node))
    return name


def _create(tree: exp.Create, text: str) -> CreateModel:
    name = model_name(tree.this, text)
    query = tree.expression
    if query is None:
        raise LanguageError("CREATE MODEL needs AS SELECT … FROM table", position(text, tree))
    if not isinstance(query, exp.Select):
        raise LanguageError("CREATE MODEL … AS takes one SELECT … FROM table [WHERE …]", position(text, query))
    options = _options(tree, text)
    unsupported = [k for k in ("with", "joins", "group", "having", "order", "limit", "offset", "qualify", "distinct",
                               "laterals", "windows") if query.args.get(k)]
    if unsupported:
        node = query.args[unsupported[0]]
        node = node[0] if isinstance(node, list) else node
        raise LanguageError(f"CREATE MODEL … AS SELECT supports columns FROM one table WHERE …; "
                            f"{unsupported[0].upper()} is not supported", position(text, node))
    source = query.args.get("from_") or query.args.get("from")
    if source is None or not isinstance(source.this, exp.Table) or not isinstance(source.this.this, exp.Identifier):
        raise LanguageError("CREATE MODEL … AS SELECT needs FROM one table (or view)", position(text, source or query))
    table_node = source.this
    if table_node.catalog:
        raise LanguageError("a table is named 'table' or 'schema.table'", position(text, table_node))
    table = exp.table_(table_node.name, db=table_node.db or None, quoted=True).sql(dialect="postgres")
    qualifiers = {table_node.name, table_node.alias_or_name}
    _strip_qualifiers(query, qualifiers, text)

    kind_text = options.pop("model_type", None)
    if kind_text is None:
        raise LanguageError("OPTIONS (model_type = …) is required: one of " + ", ".join(repr(k) for k in MODEL_TYPES),
                            position(text, tree))
    kind = MODEL_TYPES.get(str(kind_text).lower())
    if kind is None:
        raise LanguageError(f"model_type {kind_text!r} is not one of " + ", ".join(repr(k) for k in MODEL_TYPES),
                            position(text, tree.args.get("properties")))
    labels = options.pop("input_label_cols", ["label"])
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise LanguageError(f"input_label_cols must name one column, e.g. ['revenue'], got {labels!r}",
                            position(text, tree.args.get("properties")))
    order_by = options.pop("order_by", None)
    if order_by is not None and not isinstance(order_by, str):
        raise LanguageError(f"order_by must be a column name in quotes, got {order_by!r}",
                            position(text, tree.args.get("properties")))
    params = {OPTIONS[k]: v for k, v in options.items()}

    label = labels[0]
    features: list[str] = []
    star = False
    seen_label = False
    for item in query.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            star = True
            continue
        if not isinstance(item, exp.Column) or item.table:
            raise LanguageError("CREATE MODEL … AS SELECT lists plain columns of the table (no expressions or "
                                "aliases: statistics are kept per column)", position(text, item))
        if item.name == label:
            seen_label = True
        elif item.name in features:
            raise LanguageError(f"column {item.name!r} is selected twice", position(text, item))
        else:
            features.append(item.name)
    if not seen_label and not star:
        raise LanguageError(f"the label column {label!r} (input_label_cols) must be among the selected columns",
                            position(text, query))
    if star and features:
        raise LanguageError("SELECT * cannot be combined with other columns", position(text, query))
    where = query.args.get("where")
    return CreateModel(name, kind, table, label, None if star else tuple(features), order_by,
                       where.this if where is not None else None, params, bool(tree.args.get("replace")), text, tree)


def _strip_qualifiers(query: exp.Select, qualifiers: set[str], text: str) -> None:
    """Columns written table.col (or alias.col) of the one FROM table become plain columns."""
    for column in query.find_all(exp.Column):
        if column.table:
            if column.table not in qualifiers or column.args.get("db"):
                raise LanguageError(f"column {column.sql(dialect='postgres')} does not belong to the FROM table",
                                    position(text, column))
            column.set("table", None)


def _options(tree: exp.Create, text: str) -> dict:
    props = tree.args.get("properties")
    options: dict = {}
    for prop in props.expressions if props is not None else []:
        if not isinstance(prop, exp.Property):
            raise LanguageError(f"unexpected {prop.sql(dialect='bigquery')!r} in OPTIONS", position(text, prop))
        key = prop.name.lower()
        if key not in OPTIONS:
            raise LanguageError(f"unknown option {key!r}; CREATE MODEL accepts " + ", ".join(OPTIONS),
                                position(text, prop))
        if key in options:
            raise LanguageError(f"option {key!r} is given twice", position(text, prop))
        options[key] = _option_value(prop.args.get("value"), key, text)
    return options


def _option_value(node: exp.Expression | None, key: str, text: str):
    if isinstance(node, exp.Array):
        return [_option_value(e, key, text) for e in node.expressions]
    if isinstance(node, exp.Neg):
        value = _option_value(node.this, key, text)
        if isinstance(value, int | float):
            return -value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.name
        text_value = node.name
        return float(text_value) if any(c in text_value for c in ".eE") else int(text_value)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    raise LanguageError(f"option {key!r} takes a constant (a string, a number or a list of strings)",
                        position(text, node) if node is not None else None)


def ml_functions(query: exp.Query) -> list[exp.Table]:
    """The FROM items of ``query`` that are ML table functions (ML.PREDICT, ML.EVALUATE, …)."""
    return [t for t in query.find_all(exp.Table) if isinstance(t.this, exp.Predict | MLFunction)]
