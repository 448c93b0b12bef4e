"""Linear models trained by SGD with their preprocessing pipeline (continuous-deployment paper §2.1,
§3.1, §3.3; docs/continuous.md): logistic regression (log loss), a linear SVM (hinge loss) and linear
regression (squared loss).

They have no mergeable statistics: a fit reads the rows once, folds them into the pipeline's online
statistics and runs mini-batch SGD epochs (:mod:`modelstore.execution.sgd`); a warm start continues
from a stored model's weights, statistics and optimizer state. The pipeline's numeric columns are
imputed and scaled, its text columns one-hot encoded or hashed, so these families take text features
(:meth:`SGDFamily.text_inputs`).
"""

from __future__ import annotations

import numbers

from modelstore.errors import InputError
from modelstore.families._base import Family
from modelstore.families.scoring import add, number, plain
from modelstore.models._input import check_nonnegative
from modelstore.models.optimizers import SCHEDULES, hyperparameters
from modelstore.models.sgd import SGDModel

#: the options an SGD family takes beyond l2 (their defaults are in SGDFamily.params)
OPTIONS = ("l1", "optimizer", "learning_rate", "schedule", "epochs", "batch_size", "shuffle", "seed",
           "hash_buckets")
DEFAULT_L2 = 1e-4


def _positive_int(name, value, low=1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r} instead")
    return int(value)


class SGDFamily(Family):
    model_class = SGDModel
    statistics = None
    subtractable = False
    indexable = False
    iterative = True
    takes_text = True
    options = OPTIONS
    scratch_text = "one read of the rows and the SGD epochs"

    def __init__(self, kind: str, loss: str, model_types: tuple[str, ...]):
        self.kind = kind
        self.loss = loss
        self.model_types = model_types
        self.classifier = loss != "squared"

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None, l1=0.0, optimizer="adam",
               learning_rate=None, schedule=None, epochs=5, batch_size=32, shuffle=True, seed=0,
               hash_buckets=0) -> dict:
        if chunk_rows is not None:
            raise InputError(f"{self.kind} takes no chunk_rows (it is trained by SGD over all rows)")
        hyper = hyperparameters(optimizer, learning_rate)
        if schedule is not None:
            if optimizer != "sgd" or schedule not in SCHEDULES:
                raise InputError(f"schedule is one of {SCHEDULES} and only for optimizer='sgd', got {schedule!r}")
            hyper["schedule"] = schedule
        if not isinstance(shuffle, bool):
            raise InputError(f"shuffle must be True or False, got {shuffle!r} instead")
        return {"l2": check_nonnegative("l2", DEFAULT_L2 if l2 is None else l2), "l1": check_nonnegative("l1", l1),
                **hyper, "epochs": _positive_int("epochs", epochs), "batch_size": _positive_int("batch_size", batch_size),
                "shuffle": shuffle, "seed": _positive_int("seed", seed, 0),
                "hash_buckets": _positive_int("hash_buckets", hash_buckets, 0)}

    def fit_options(self, params: dict) -> dict:
        options = {k: params[k] for k in ("l2", *OPTIONS) if k in params}
        if params.get("optimizer") == "sgd":
            options["schedule"] = params["schedule"]
        return options

    def text_inputs(self, model) -> set[str]:
        return set(model.pipeline.text)

    def sql_scores(self, model, xs):
        """b + Σ wⱼ · featureⱼ(row), the pipeline's transform written into the sum (docs/continuous.md)."""
        inputs = dict(zip(model.descriptor.features if model.descriptor else model.pipeline.raw_order, xs))
        if not model.classifier:
            return [add([number(model.intercept_)] + model.pipeline.sql_terms(model.coef_, inputs, number))]
        return [add([number(model.intercept_[k])] + model.pipeline.sql_terms(model.coef_[k], inputs, number))
                for k in range(model.outputs)]

    def weights(self, model):
        features = list(model.feature_names_)
        if not model.classifier:
            rows = [(f, float(w)) for f, w in zip(features, model.coef_)]
            rows.append(("__INTERCEPT__", float(model.intercept_)))
            return rows, ["processed_input", "weight"], ["text", "double precision"]
        classes = [plain(c) for c in model.classes_]
        outputs = classes[1:] if model.outputs == 1 else classes
        rows = []
        for k, c in enumerate(outputs):
            rows += [(f, str(c), float(w)) for f, w in zip(features, model.coef_[k])]
            rows.append(("__INTERCEPT__", str(c), float(model.intercept_[k])))
        return rows, ["processed_input", "class_label", "weight"], ["text", "text", "double precision"]

    def summary(self, model):
        return {"loss": model.loss, "features": model.feature_names_, "classes": model.classes_,
                "intercept": model.intercept_, "coef": model.coef_, "steps": model.steps,
                "training_loss": model.training_loss_}


SGD_LOGISTIC = SGDFamily("sgd_logistic", "log", ("sgd_logistic_reg",))
SGD_SVM = SGDFamily("sgd_svm", "hinge", ("sgd_svm", "linear_svm"))
SGD_LINEAR = SGDFamily("sgd_linear", "squared", ("sgd_linear_reg",))
