"""Judge alignment: golden sets, agreement between judges and human experts, judge refinement.

Import from the submodules (``costar.align.agreement``, ``costar.align.tables``); this package
file stays free of imports so that loading one alignment tool never pays for the others.
"""
