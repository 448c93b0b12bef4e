"""Logistic regression by the mixture-weight method over chunks (paper §2.3, §4, Algorithms 1–2).

Logistic regression has no finite sufficient statistics, so modelstore cannot give the exact
from-scratch model from stored summaries. Instead (paper §4, after Mann et al. 2009) the rows of a
request are cut into chunks of about ``l`` rows along the ordering column (:func:`split_chunks`),
one regularised model is trained per chunk (:func:`train_chunk`, Algorithm 1's inner loop), and the
request's model is their average weighted by chunk size (:meth:`LogisticMixture.from_chunks`,
Algorithm 1 line 8 with μ_k = n_k / Σ n):

    w_μ = Σ_k (n_k / Σ_j n_j) · w_k.

A :class:`ChunkModel` is small, immutable and JSON-serialisable, so it can be materialised and
reused by any later request whose range covers that chunk (Algorithm 2). Chunks can be added to a
mixture but never subtracted: the planner's graph has forward edges only for this kind.

One module per concept: :mod:`.chunk` (a chunk's model and its training; the objective and the
``l2`` convention), :mod:`.split` (cutting a gap into chunks), :mod:`.mixture` (the average and
Theorem 1's bound).
"""

from modelstore.models.logistic._common import DEFAULT_L2
from modelstore.models.logistic.chunk import ChunkModel, train_chunk
from modelstore.models.logistic.mixture import LogisticMixture, fit_mixture
from modelstore.models.logistic.split import DEFAULT_CHUNK_ROWS, split_chunks, train_chunks

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_L2",
    "ChunkModel",
    "LogisticMixture",
    "fit_mixture",
    "split_chunks",
    "train_chunk",
    "train_chunks",
]
