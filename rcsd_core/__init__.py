"""rcsd_core: the engine behind the rcsd studio.

Rubric-conditioned self-distillation (RCSD): the model, shown a rubric as privileged context,
acts as its own teacher on the chains it samples as a student. The package holds the data
contracts (rubrics, tasks, chains, scores, run directories), the checks and scoring, model
loading, sampling, the losses and the training round. Pages and the CLI call into it.
"""

__version__ = "0.1.0"
