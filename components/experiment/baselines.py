"""The experiment's names as they were before the package was split by concern (issue 23).

``from components.experiment.baselines import X`` keeps working for every name this module
defined; new code imports from the module that holds it:

- :mod:`~components.experiment.config`: ``ExperimentConfig``, the model rows and labels
- :mod:`~components.experiment.data`: ``prepare_data``, ``ExperimentData``, query intents
- :mod:`~components.experiment.minilm`: the MiniLM baseline
- :mod:`~components.experiment.tiny_llm`: the backbone, its fine-tuning, GRPO
- :mod:`~components.experiment.lanes`: the second training process
- :mod:`~components.experiment.cot_analysis`: CoT statistics, the product type a CoT names
- :mod:`~components.experiment.oracle`: the type oracle (the world's ceiling)
- :mod:`~components.experiment.scoring`: scores, per-query HitRate, paired CIs against the direct embedder
- :mod:`~components.experiment.report`: the markdown report
- :mod:`~components.experiment.mlflow_runs`: one MLflow child run per model
- :mod:`~components.experiment.run`: ``run_experiment``
"""

from components.experiment.config import (ABLATIONS, DIRECT_GROUP, DIRECT_POOLING, HARD_CATEGORIES, LABELS,
                                          MODEL_IDS, PAPER_TARGET_RELATIVE, ExperimentConfig)
from components.experiment.cot_analysis import (_cot_stats, _evaluate_generated, _samples, _train_cot_fit,
                                                _words, first_named_type, keyword_f1, type_accuracy,
                                                type_phrases)
from components.experiment.data import (INTENT_NEW, INTENT_SEEN, ExperimentData, _padded, _phrase_in,
                                        _stratified, intent_groups, intent_of, intent_seen, prepare_data)
from components.experiment.lanes import (_InlineLane, _lane_setup, _open_lane, _timed, lane_direct,
                                         lane_minilm)
from components.experiment.minilm import (_minilm_forward, embed_minilm, load_minilm, minilm_bf16_available,
                                          train_minilm)
from components.experiment.mlflow_runs import _child_run, _child_run_named, _finish_child, _log_history
from components.experiment.oracle import _type_oracle, type_oracle_ranking
from components.experiment.report import (_categories_present, _cell, _diff_table, _fmt, _secs,
                                          comparison_markdown, markdown_tables, write_markdown)
from components.experiment.run import _display_path, _git_commit, run_experiment
from components.experiment.scoring import _compare_with_direct, per_query_block, score
from components.experiment.tiny_llm import _n_params, backbone_for, grpo_on, train_tiny_llm

__all__ = ["ABLATIONS", "DIRECT_GROUP", "DIRECT_POOLING", "HARD_CATEGORIES", "LABELS", "MODEL_IDS",
           "PAPER_TARGET_RELATIVE", "ExperimentConfig", "_cot_stats", "_evaluate_generated", "_samples",
           "_train_cot_fit", "_words", "first_named_type", "keyword_f1", "type_accuracy", "type_phrases",
           "INTENT_NEW", "INTENT_SEEN", "ExperimentData", "_padded", "_phrase_in", "_stratified",
           "intent_groups", "intent_of", "intent_seen", "prepare_data", "_InlineLane", "_lane_setup",
           "_open_lane", "_timed", "lane_direct", "lane_minilm", "_minilm_forward", "embed_minilm",
           "load_minilm", "minilm_bf16_available", "train_minilm", "_child_run", "_child_run_named",
           "_finish_child", "_log_history", "_type_oracle", "type_oracle_ranking", "_categories_present",
           "_cell", "_diff_table", "_fmt", "_secs", "comparison_markdown", "markdown_tables",
           "write_markdown", "_display_path", "_git_commit", "run_experiment", "_compare_with_direct",
           "per_query_block", "score", "_n_params", "backbone_for", "grpo_on", "train_tiny_llm"]
