"""Training: a distillation round over a run directory (see round.py; run with `python -m rcsd_core.training`).

Importing this package loads nothing heavy: torch comes with `rcsd_core.training.round`.
"""
