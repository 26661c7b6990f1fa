"""The assertion step: a test's figures against the baseline of this machine.

``policy`` (which figures are gated, with which rule, and the Bonferroni family), ``identity`` (what a
figure was measured on), ``baseline`` (the stored files), ``rules`` (the decision rules, pure
statistics), ``shift`` (did the machine change speed), ``judge`` (the one verdict ladder, shared
with ``pytest-slm diff``), ``gate`` (one process's gate: family, comparisons, saving) and
``confirm`` (``--slm-confirm``)."""
