"""Formats: the data sets practitioners already have, in and out of rcsd's contracts.

Importers turn a source into tasks (with their own criteria where the source has per-prompt
rubrics) and a shared rubric; exporters turn chains, scores and reviews into the files trainers
and annotation tools read. Pure data work (pandas / pyarrow / datasets), no torch: this layer
sits beside `scoring`, on top of `contracts`.

    healthbench.py   HealthBench JSONL: chat prompts with per-prompt {criterion, points, tags}
    rar.py           RaR (Rubrics as Rewards) JSONL / Parquet: question, reference_answer, rubric
    tasklist.py      CSV and Parquet task lists: id, prompt, reference?, split?
    trl.py           TRL data sets in (prompt-only, prompt-completion, conversational, SDFT) and out
    review_tools.py  reviewed chains with per-criterion verdicts for Argilla and Label Studio
    tables.py        reading rows from JSONL, Parquet, CSV or a `datasets.save_to_disk` folder
    ids.py           stable criterion and task ids derived from text
    imports.py       `import_source(format, src)` and `write_import(dir, ...)`: all-or-nothing
    exports.py       `export_records(format, ...)` and `write_export(path, records)`: atomic

    rcsd import --format healthbench data/healthbench.jsonl --out tasks/healthbench
    rcsd export --format sdft --chains c.jsonl --tasks t.jsonl --rubric r.yaml --out sdft.parquet
"""
