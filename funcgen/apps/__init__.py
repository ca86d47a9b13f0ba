"""User-facing programs: the ``funcgen`` command (:mod:`.cli`), the demo and the notebook runner."""
