"""Where a materialised model came from: its catalog name, the descriptor of its rows, its executed plan."""

from __future__ import annotations


class Provenance:
    """A model fitted from arrays has no descriptor or plan; one built by a store gets them, once, from
    :meth:`materialized`, so that ``model.name``, ``model.descriptor`` and ``model.plan`` always agree
    with the catalog row the store wrote."""

    descriptor = None  #: the Descriptor of the rows behind the model (None when fitted from arrays)
    plan = None  #: the ExecutedPlan that built it (None when fitted from arrays)

    def materialized(self, *, name, descriptor, plan):
        """This model as the store materialised it (``name`` is None when nothing was stored); returns it."""
        self.name = name
        self.descriptor = descriptor
        self.plan = plan
        return self
