"""Feedback provenance: annotations as rows, registered guidelines, agreement and calibration drift,
training-signal monitoring, AI-content contamination and run cards.

Modules: ``annotations`` (import, pseudonyms), ``guidelines``, ``agreement`` (the statistics),
``analysis`` (agreement reports, drift), ``signal`` (label distributions per step and guideline),
``contamination`` (model outputs, detectors, shares and chains), ``runcard``, ``synth`` (a seeded
annotation set with planted facts). Nothing here is imported by ``import rowtrail``.
"""
