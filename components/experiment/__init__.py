"""LREM (cold start, then GRPO) against direct-embedding baselines, on one split, with one budget.

Every model is trained and evaluated on the SAME train/eval split of the demo world
(training pairs: the teacher's Query-CoT-Item triplets of the train queries), and scored
the same way: every eval query against the FULL catalog by exact cosine top-k (numpy;
what a FLAT index returns). The tiny-LLM rows all start from the SAME pre-trained
backbone (:mod:`components.training.pretrain`), so the comparison is fair.

Models (ids, in report order):

- ``minilm_zeroshot``   all-MiniLM-L6-v2 (BERT-class, 22M), mean pooling, as shipped.
- ``minilm_infonce``    the same, fine-tuned with InfoNCE on (query, item title) pairs.
- ``llm_direct_last``   the backbone as a direct embedder, hidden state at ``<emb>`` (last
                        token), InfoNCE on the empty CoT, no SFT.
- ``llm_direct_mean``   the same with mean pooling.
- ``lrem_cs``           LREM cold start (SFT warm-up, then 0.1 x SFT + 1.0 x InfoNCE, part of
                        the InfoNCE on the model's own CoT), queries embedded after their own
                        greedy CoT.
- ``lrem_rl``           LREM cold start + GRPO (TRL; G = 8; 0.5 format + 0.2 length + 1.0 rank
                        accuracy; + 0.1 x InfoNCE), greedy CoT at evaluation.
- ``lrem_empty_cot``, ``lrem_query_cot``, ``lrem_teacher_cot``: ablations on the SAME final
                        model (CS + RL): empty CoT, the query repeated as the CoT, and the
                        teacher's CoT of the eval query (the ceiling of what a perfect CoT gives).

The report adds paired-bootstrap 95% CIs of LREM (CS + RL) minus the best same-backbone
direct embedder, per category and on the hard categories together (qa, alternative,
knowledge), and CoT statistics against the teacher. Everything is logged to MLflow
(experiment ``lrem-baselines``): one parent run, one child run per model;
``latest.json`` / ``latest.md`` go to ``output_dir``.

The package, by concern: ``config`` (settings, model rows), ``data`` (world, triplets, eval
queries, intents), ``minilm`` and ``tiny_llm`` (the models' training), ``lanes`` (the second
training process), ``cot_analysis``, ``oracle`` (the world's ceiling), ``scoring`` (scores and
paired CIs), ``report`` (markdown), ``mlflow_runs``, ``run`` (``run_experiment``);
``python -m components.experiment`` is its command line (``__main__``). ``baselines`` keeps
the names it held before the split.
"""

from components.experiment.config import MODEL_IDS, ExperimentConfig
from components.experiment.run import run_experiment

__all__ = ["ExperimentConfig", "MODEL_IDS", "run_experiment"]
