"""The judge loop: humans label traces, golden sets fix the reference, agreement measures each judge
against the humans, gates fail a judge that drifts, optimizers align a judge and versions keep
every aligned definition. The front door is :mod:`costar.api`.

Import from the submodules; this package file stays free of imports so that loading one tool
never pays for the others:

* labeling — :mod:`~costar.align.labeling` (labels and the queue), :mod:`~costar.align.labeling_terminal`,
  :mod:`~costar.align.labeling_web`, :mod:`~costar.align.label_files` (import, export),
  :mod:`~costar.align.tables` (reading label tables), :mod:`~costar.align.active` (what to label next);
* golden sets — :mod:`~costar.align.golden`;
* agreement — :mod:`~costar.align.agreement_stats` (the statistics), :mod:`~costar.align.agreement_results`
  (results and their text), :mod:`~costar.align.agreement_files` (two label files),
  :mod:`~costar.align.agreement_store` (judges against labels in the store), :mod:`~costar.align.gates`
  (agreement floors), :mod:`~costar.align.corrected` (pass rates corrected for judge errors);
* alignment — :mod:`~costar.align.optimize` (the optimizer protocol), :mod:`~costar.align.memalign`,
  :mod:`~costar.align.gepa_opt`, :mod:`~costar.align.embeddings`, :mod:`~costar.align.versions`.
"""
