"""Mixture-weight logistic regression (paper §4, Algorithm 2): chunk models of ``chunk_rows`` rows,
trained and stored, averaged into the request's model. Chunk models add but do not subtract, so its
plans run forward only and train the chunks no stored model covers."""

from __future__ import annotations


from modelstore.errors import InputError
from modelstore.families._base import Family
from modelstore.families.scoring import dot, plain
from modelstore.models._input import check_nonnegative
from modelstore.models.logistic import DEFAULT_CHUNK_ROWS, DEFAULT_L2, LogisticMixture


class LogisticFamily(Family):
    kind = "logistic"
    model_types = ("logistic_reg",)
    model_class = LogisticMixture
    statistics = None
    classifier = True
    subtractable = False
    trained = True
    indexable = False  # its "index" is chunk models over the whole table (build_index(kind='logistic'))
    scratch_text = "training every chunk"
    deploy_kind = "sgd_logistic"  # analysts' batch path here; a deployment keeps logistic fresh by SGD (#17)

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        lam = check_nonnegative("l2", DEFAULT_L2 if l2 is None else l2)
        if lam == 0:
            raise InputError("l2 must be > 0 for logistic regression: a chunk whose classes are separable has no "
                             "finite unregularised model, and Theorem 1's bound needs λ > 0")
        rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 2:
            raise InputError(f"chunk_rows must be an integer >= 2, got {chunk_rows!r} instead")
        return {"l2": lam, "chunk_rows": rows}

    def params_key(self, params: dict) -> str:
        """Chunk models are reusable only by requests with the same objective."""
        return f"l2={float(params['l2'])!r}"

    def sql_scores(self, model, xs):
        """zₖ = bₖ + wₖ·x per output (two classes: the log-odds of ``classes_[1]`` alone)."""
        return [dot(model.coef_[k], xs, model.intercept_[k]) for k in range(model.coef_.shape[0])]

    def weights(self, model):
        features = list(model.descriptor.features)
        classes = [plain(c) for c in model.classes_]
        outputs = classes[1:] if model.coef_.shape[0] == 1 else classes
        rows = []
        for k, c in enumerate(outputs):
            rows += [(f, c, float(w)) for f, w in zip(features, model.coef_[k])]
            rows.append(("__INTERCEPT__", c, float(model.intercept_[k])))
        return rows, ["processed_input", "class_label", "weight"], ["text", "text", "double precision"]

    def summary(self, model):
        return {"classes": model.classes_, "intercept": model.intercept_, "coef": model.coef_,
                "training_accuracy": model.training_accuracy_}


LOGISTIC = LogisticFamily()
