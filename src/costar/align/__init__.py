"""The judge loop: humans label traces, golden sets fix the reference, agreement measures each judge
against the humans, gates fail a judge that drifts, optimizers align a judge and versions keep
every aligned definition. The front door is :mod:`costar.api`.

The names below (what an optimizer plugin and a reader of versions need) load on first use, so
that loading one tool never pays for the others; the rest is imported from the submodules:

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

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.align.optimize import AgreementMeter as AgreementMeter
    from costar.align.optimize import AlignBudget as AlignBudget
    from costar.align.optimize import AlignmentError as AlignmentError
    from costar.align.optimize import AlignmentOptimizer as AlignmentOptimizer
    from costar.align.optimize import AlignmentReport as AlignmentReport
    from costar.align.optimize import AlignmentResult as AlignmentResult
    from costar.align.optimize import BaseOptimizer as BaseOptimizer
    from costar.align.optimize import JudgeSpec as JudgeSpec
    from costar.align.optimize import Proposal as Proposal
    from costar.align.optimize import SplitNeeds as SplitNeeds
    from costar.align.versions import JudgeVersion as JudgeVersion
    from costar.align.versions import VersionRegistry as VersionRegistry

_LAZY = {
    "AgreementMeter": "costar.align.optimize", "AlignBudget": "costar.align.optimize",
    "AlignmentError": "costar.align.optimize", "AlignmentOptimizer": "costar.align.optimize",
    "AlignmentReport": "costar.align.optimize", "AlignmentResult": "costar.align.optimize",
    "BaseOptimizer": "costar.align.optimize", "JudgeSpec": "costar.align.optimize",
    "Proposal": "costar.align.optimize", "SplitNeeds": "costar.align.optimize",
    "JudgeVersion": "costar.align.versions", "VersionRegistry": "costar.align.versions",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
