"""``dummy``: a deterministic synthetic household (see :mod:`.provider`)."""
