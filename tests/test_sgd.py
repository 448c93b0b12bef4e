"""SGD-trained families (issue #17, docs/continuous.md): the optimizers against hand-computed steps, the
training against scikit-learn (the same trajectory step for step; convergence to the exact regularised
solution), warm start, the pipeline's online statistics, and the pipeline applied identically by the
three doors (Python predict, ML.PREDICT, modelstore.predict)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Lasso, LogisticRegression, Ridge, SGDClassifier, SGDRegressor

import modelstore
from modelstore.errors import InputError
from modelstore.models.optimizers import Optimizer, hyperparameters
from modelstore.models.pipeline import Pipeline, bucket
from modelstore.models.sgd import SGDModel


def params(optimizer="sgd", learning_rate=None, **kw):
    base = {**hyperparameters(optimizer, learning_rate), "l2": 0.0, "l1": 0.0, "epochs": 1, "batch_size": 1,
            "shuffle": False, "seed": 0, "hash_buckets": 0}
    base.update(kw)
    return base


def scaled_problem(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.1, size=n)
    return X, y


def fresh_model(loss, p, d=3, classes=None):
    pipe = Pipeline([f"x{j}" for j in range(d)], [])
    return SGDModel("sgd_x", loss, p, pipe, classes)


# -- optimizers: one step by hand ----------------------------------------------------------------------------

THETA = np.array([0.5, -1.0])
GRAD = np.array([0.2, -0.4])


def test_plain_sgd_steps_by_hand():
    opt = Optimizer(hyperparameters("sgd", 0.1), 2)  # invscaling, power_t 0.5
    theta, rates = opt.step(THETA, GRAD)
    assert np.allclose(theta, [0.5 - 0.1 * 0.2, -1.0 + 0.1 * 0.4], rtol=0, atol=1e-15)
    theta, _ = opt.step(theta, GRAD)  # t = 2: η = 0.1/√2
    assert np.allclose(theta, [0.48 - 0.1 / math.sqrt(2) * 0.2, -0.96 + 0.1 / math.sqrt(2) * 0.4], atol=1e-15)
    assert np.allclose(rates, 0.1)


def test_adam_step_by_hand():
    opt = Optimizer(hyperparameters("adam", 0.01), 2)
    theta, _ = opt.step(THETA, GRAD)
    # t = 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²: the step is η·g/(|g| + ε) ≈ η·sign(g)
    want = THETA - 0.01 * GRAD / (np.abs(GRAD) + 1e-8)
    assert np.allclose(theta, want, rtol=0, atol=1e-15)
    theta2, rates = opt.step(theta, np.array([0.1, 0.0]))
    m = 0.9 * 0.1 * GRAD + 0.1 * np.array([0.1, 0.0])
    v = 0.999 * 0.001 * GRAD ** 2 + 0.001 * np.array([0.01, 0.0])
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    assert np.allclose(theta2, theta - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=0, atol=1e-15)
    assert np.allclose(rates, 0.01 / (np.sqrt(v_hat) + 1e-8))


def test_rmsprop_step_by_hand():
    opt = Optimizer(hyperparameters("rmsprop", 0.01), 2)
    theta, _ = opt.step(THETA, GRAD)
    sq = 0.1 * GRAD ** 2
    assert np.allclose(theta, THETA - 0.01 * GRAD / (np.sqrt(sq) + 1e-8), rtol=0, atol=1e-15)
    theta2, _ = opt.step(theta, GRAD)
    sq = 0.9 * sq + 0.1 * GRAD ** 2
    assert np.allclose(theta2, theta - 0.01 * GRAD / (np.sqrt(sq) + 1e-8), rtol=0, atol=1e-15)


def test_adadelta_step_by_hand():
    opt = Optimizer(hyperparameters("adadelta"), 2)
    theta, _ = opt.step(THETA, GRAD)
    sq = 0.05 * GRAD ** 2
    dx = -np.sqrt(0 + 1e-6) / np.sqrt(sq + 1e-6) * GRAD
    assert np.allclose(theta, THETA + dx, rtol=0, atol=1e-15)
    acc = 0.05 * dx ** 2
    theta2, _ = opt.step(theta, GRAD)
    sq = 0.95 * sq + 0.05 * GRAD ** 2
    dx2 = -np.sqrt(acc + 1e-6) / np.sqrt(sq + 1e-6) * GRAD
    assert np.allclose(theta2, theta + dx2, rtol=0, atol=1e-15)


def test_optimizer_state_round_trips():
    for name in ("sgd", "adam", "rmsprop", "adadelta"):
        a = Optimizer(hyperparameters(name), 2)
        a.step(THETA, GRAD)
        b = Optimizer(hyperparameters(name), 2, a.to_state())
        assert np.array_equal(a.step(THETA, GRAD)[0], b.step(THETA, GRAD)[0])


# -- training against scikit-learn -----------------------------------------------------------------------------

@pytest.mark.parametrize("loss,sk_loss", [("squared", None), ("log", "log_loss"), ("hinge", "hinge")])
def test_plain_sgd_is_sklearns_trajectory(loss, sk_loss):
    """Batch size 1, no shuffling, invscaling: the same updates as scikit-learn's plain_sgd, step for step."""
    X, y = scaled_problem()
    p = params("sgd", 0.01, l2=1e-3)
    if loss == "squared":
        model = fresh_model(loss, p)
        model.train(X, model._targets(y), epochs=5, batch_size=1, shuffle=False, seed=0)
        sk = SGDRegressor(alpha=1e-3, learning_rate="invscaling", eta0=0.01, power_t=0.5, max_iter=5, tol=None,
                          shuffle=False).fit(X, y)
        assert np.abs(model.coef_ - sk.coef_).max() < 1e-12
        assert abs(model.intercept_ - sk.intercept_[0]) < 1e-12
    else:
        labels = (y > 0.3).astype(int)
        model = fresh_model(loss, p, classes=[0, 1])
        model.train(X, model._targets(labels), epochs=5, batch_size=1, shuffle=False, seed=0)
        sk = SGDClassifier(loss=sk_loss, alpha=1e-3, learning_rate="invscaling", eta0=0.01, power_t=0.5, max_iter=5,
                           tol=None, shuffle=False).fit(X, labels)
        assert np.abs(model.coef_ - sk.coef_).max() < 1e-12
        assert np.abs(model.intercept_ - sk.intercept_).max() < 1e-12


@pytest.mark.parametrize("optimizer,rate,epochs,tol", [
    ("sgd", 0.1, 300, 1e-9), ("adam", 0.05, 1000, 1e-9), ("adadelta", None, 1000, 1e-9),
    # RMSprop with a constant rate ends in a cycle of about η around the optimum (its steps are ~η·sign g)
    ("rmsprop", 0.001, 3000, 1e-3)])
def test_converges_to_ridge(optimizer, rate, epochs, tol):
    """Mean ½(z − y)² + (λ/2)‖w‖² is ridge with α = nλ: every optimizer gets there on full batches."""
    X, y = scaled_problem()
    extra = {"schedule": "constant"} if optimizer == "sgd" else {}
    model = fresh_model("squared", params(optimizer, rate, l2=1e-2, **extra))
    model.train(X, model._targets(y), epochs=epochs, batch_size=len(X), shuffle=False, seed=0)
    exact = Ridge(alpha=len(X) * 1e-2).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < tol
    assert abs(model.intercept_ - exact.intercept_) < tol


def test_minibatch_adam_near_ridge():
    """Shuffled mini-batches (the default training) land within the noise of the optimum."""
    X, y = scaled_problem()
    model = fresh_model("squared", params("adam", 0.01, l2=1e-2))
    model.train(X, model._targets(y), epochs=200, batch_size=32, shuffle=True, seed=0)
    exact = Ridge(alpha=len(X) * 1e-2).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < 0.02


def test_logistic_converges_to_sklearn_logistic_regression():
    X, y = scaled_problem()
    labels = (y + np.random.default_rng(1).normal(scale=1.0, size=len(y)) > 0.3).astype(int)
    model = fresh_model("log", params("adam", 0.05, l2=1e-2), classes=[0, 1])
    model.train(X, model._targets(labels), epochs=600, batch_size=len(X), shuffle=False, seed=0)
    exact = LogisticRegression(C=1 / (len(X) * 1e-2), tol=1e-12, max_iter=10_000).fit(X, labels)
    assert np.abs(model.coef_ - exact.coef_).max() < 2e-3
    assert np.abs(model.intercept_ - exact.intercept_).max() < 2e-3


def test_hinge_reaches_sklearns_objective():
    """Hinge is not smooth: compare objective values (mine, from both solutions) rather than weights."""
    X, y = scaled_problem()
    labels = (y + np.random.default_rng(1).normal(scale=1.0, size=len(y)) > 0.3).astype(int)
    model = fresh_model("hinge", params("adam", 0.01, l2=1e-2), classes=[0, 1])
    t = model._targets(labels)
    model.train(X, t, epochs=300, batch_size=32, shuffle=True, seed=0)
    sk = SGDClassifier(loss="hinge", alpha=1e-2, max_iter=1000, tol=1e-9, random_state=0).fit(X, labels)
    ref = fresh_model("hinge", params(l2=1e-2), classes=[0, 1])
    ref.coef_, ref.intercept_ = sk.coef_.copy(), sk.intercept_.copy()
    assert model.objective(X, t) <= ref.objective(X, t) * 1.01


def test_l1_proximal_is_lasso():
    """Plain SGD on full batches with the proximal L1 step is ISTA: it converges to the lasso."""
    X, y = scaled_problem()
    X = np.c_[X, np.random.default_rng(2).normal(size=len(X))]  # a useless feature the lasso zeroes
    model = fresh_model("squared", params("sgd", 0.1, schedule="constant", l1=0.05), d=4)
    model.train(X, model._targets(y), epochs=2000, batch_size=len(X), shuffle=False, seed=0)
    exact = Lasso(alpha=0.05, tol=1e-12, max_iter=100_000).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < 1e-8
    assert model.coef_[3] == 0.0 and exact.coef_[3] == 0.0
