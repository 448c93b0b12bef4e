"""Learning-rate methods for the SGD-trained families (continuous-deployment paper §2.1, §3.3).

Each optimizer updates a flat parameter vector θ from a gradient g, written to the published formulas:

- ``sgd`` (plain SGD, Algorithm 1): θ ← θ − η_t g, with η_t = η₀ (``constant``) or η₀ / t^power_t
  (``invscaling``, scikit-learn's schedule of the same name), t = 1, 2, … the step number;
- ``adam`` (Kingma & Ba 2015, Algorithm 1): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
  m̂ = m / (1−β₁ᵗ), v̂ = v / (1−β₂ᵗ), θ ← θ − η m̂ / (√v̂ + ε);
- ``rmsprop`` (Tieleman & Hinton 2012, lecture 6e): E[g²] ← ρE[g²] + (1−ρ)g², θ ← θ − η g / (√E[g²] + ε);
- ``adadelta`` (Zeiler 2012, Algorithm 1): E[g²] ← ρE[g²] + (1−ρ)g²,
  Δθ = −√(E[Δθ²] + ε) / √(E[g²] + ε) · g, E[Δθ²] ← ρE[Δθ²] + (1−ρ)Δθ², θ ← θ + η Δθ (η = 1 in the paper).

The whole state (step count and per-coordinate accumulators) is plain data (:meth:`Optimizer.to_state`):
the paper's §3.3 observation that an SGD iteration needs only the model and the learning-rate state of
the previous one is what lets a deployment store it with each version and resume from it (warm start).
:meth:`Optimizer.step` also returns each coordinate's effective step size, which the L1 proximal step
(soft thresholding by ``l1 × step``) needs.
"""

from __future__ import annotations

import numpy as np

from modelstore.errors import InputError

#: the optimizers, by name, with their hyperparameters' defaults
DEFAULTS: dict[str, dict] = {
    "sgd": {"learning_rate": 0.01, "schedule": "invscaling", "power_t": 0.5},
    "adam": {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "rmsprop": {"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-8},
    "adadelta": {"learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-6},
}
SCHEDULES = ("constant", "invscaling")


def hyperparameters(name, learning_rate=None) -> dict:
    """The optimizer's name and hyperparameters, validated, with defaults (stored with the model)."""
    if name not in DEFAULTS:
        raise InputError(f"optimizer must be one of {sorted(DEFAULTS)}, got {name!r} instead")
    hyper = dict(DEFAULTS[name])
    if learning_rate is not None:
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not learning_rate > 0 \
                or not np.isfinite(learning_rate):
            raise InputError(f"learning_rate must be a finite number > 0, got {learning_rate!r} instead")
        hyper["learning_rate"] = float(learning_rate)
    return {"optimizer": name, **hyper}


class Optimizer:
    """One learning-rate method over a flat parameter vector of ``size`` coordinates."""

    def __init__(self, hyper: dict, size: int, state: dict | None = None):
        self.name = hyper["optimizer"]
        self.hyper = dict(hyper)
        self.t = 0
        self.acc = {key: np.zeros(size) for key in self._accumulators()}
        if state:
            self.t = int(state["t"])
            for key in self.acc:
                self.acc[key] = np.asarray(state[key], dtype=float).copy()

    def _accumulators(self) -> tuple[str, ...]:
        return {"sgd": (), "adam": ("m", "v"), "rmsprop": ("sq",), "adadelta": ("sq", "dx")}[self.name]

    def step(self, theta: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next θ and each coordinate's effective step size (the η that multiplied its gradient)."""
        h = self.hyper
        self.t += 1
        t = self.t
        eta = h["learning_rate"]
        if self.name == "sgd":
            rate = eta if h["schedule"] == "constant" else eta / t ** h["power_t"]
            rates = np.full_like(theta, rate)
        elif self.name == "adam":
            m = self.acc["m"] = h["beta1"] * self.acc["m"] + (1 - h["beta1"]) * grad
            v = self.acc["v"] = h["beta2"] * self.acc["v"] + (1 - h["beta2"]) * grad * grad
            m_hat = m / (1 - h["beta1"] ** t)
            v_hat = v / (1 - h["beta2"] ** t)
            # the L1 step thresholds by η/(√v̂+ε): the step size Adam gives each coordinate
            return theta - eta * m_hat / (np.sqrt(v_hat) + h["epsilon"]), eta / (np.sqrt(v_hat) + h["epsilon"])
        elif self.name == "rmsprop":
            sq = self.acc["sq"] = h["rho"] * self.acc["sq"] + (1 - h["rho"]) * grad * grad
            rates = eta / (np.sqrt(sq) + h["epsilon"])
        else:  # adadelta
            sq = self.acc["sq"] = h["rho"] * self.acc["sq"] + (1 - h["rho"]) * grad * grad
            scale = np.sqrt(self.acc["dx"] + h["epsilon"]) / np.sqrt(sq + h["epsilon"])
            delta = -scale * grad
            self.acc["dx"] = h["rho"] * self.acc["dx"] + (1 - h["rho"]) * delta * delta
            return theta + eta * delta, eta * scale
        return theta - rates * grad, rates

    def remap(self, index: np.ndarray) -> None:
        """Carry the accumulators to a new parameter layout: coordinate i takes old coordinate
        ``index[i]``, or starts at 0 when ``index[i]`` is −1 (a feature seen for the first time)."""
        for key, values in self.acc.items():
            new = np.zeros(len(index))
            known = index >= 0
            new[known] = values[index[known]]
            self.acc[key] = new

    def to_state(self) -> dict:
        return {"t": self.t, **{key: values.tolist() for key, values in self.acc.items()}}


__all__ = ["DEFAULTS", "SCHEDULES", "Optimizer", "hyperparameters"]
