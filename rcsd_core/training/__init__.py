"""Training: a distillation round over a run directory (run with `python -m rcsd_core.training`).

    round.py        Round (setup / train / save_checkpoint / cleanup) and train_round, the entry point
    teacher.py      Teacher: frozen | live | ema weights, the EMA copy, teacher prompts and analysis notes
    objectives.py   the distillation and rejection-SFT steps over micro-batches (no file I/O)
    checkpoints.py  adapter/ save (atomic swap), recovery after an interrupted save, weights-only load
    metrics.py      the metrics writer (samples, metrics lines, status, log lines) and step summaries
    distributed.py  gather, the all-reduced flag, stop requests (signals, STOP file)
    schedule.py     lr_factor, step_tasks, derive_seed
    __main__.py     the only argument parser

Importing this package loads nothing heavy: torch comes with the modules above.
"""
