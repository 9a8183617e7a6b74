"""Typed configuration of every pipeline step, loaded from YAML.

Each step owns one dataclass; ``PipelineConfig`` composes them. A YAML file sets any
subset of fields (unknown keys are an error, so a typo never silently falls back to a
default). The whole resolved config is logged to MLflow by the steps that train.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_args, get_origin, get_type_hints

import yaml

from components.model.prompts import PROMPT_STYLES
from components.paths import REPO_ROOT, default_milvus_uri, default_mlflow_uri

CATEGORIES = ("plain", "qa", "alternative", "negative", "knowledge")
ITEM_FILTERS = ("retriever_then_judged", "retriever", "judged")  # teacher.item_filter
ITEM_SELECTS = ("top", "spread")  # teacher.item_select
POOLINGS = ("emb_token", "mean")  # model.pooling
REWARD_NAMES = ("format", "length", "accuracy")  # grpo.reward_funcs
GPU_SWITCHES = ("auto", "true", "false")  # cold_start.bf16 / gradient_checkpointing (auto: on with CUDA)
# validation.allow_drift: the drift bounds of the raw-data gate a run may exceed ("all": every one)
DRIFT_BOUNDS = ("rows", "category_mix", "category_vanished", "split_mix", "null_rates", "changed_titles")


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, or a value outside its choices."""


@dataclass
class WorldConfig:
    """The seeded demo e-commerce world (``lrem data generate``)."""

    seed: int = 20251016  # seed of the world generator (the same seed and fields: byte-identical data)
    n_items: int = 6000  # catalog items generated
    n_queries: int = 2500  # queries generated, train and eval together
    eval_fraction: float = 0.2  # share of each category's queries put in the eval split
    max_relevant: int = 40  # cap on judged-relevant items per query (drawn deterministically)
    premium_share: float = 0.15  # share of each product type's items sold by its premium brands
    # How the hard queries (qa, alternative, knowledge) split into train/eval. "query": each query
    # at random, so most eval queries ask about a use, fact or premium brand some training query
    # also names. "intent": by intent (the use, the fact, the premium brand): no training query
    # names an eval query's intent, so only what the backbone learned in pre-training (the world's
    # knowledge as sentences) can answer it. Plain and negative queries split by query either way.
    hard_split: str = "intent"
    # How queries are worded. "varied": composed from parts as people type them (openers, the
    # intent first, in the middle or last, trailing asks, fillers, reworded intents, typos), with
    # held-out patterns and wordings in eval only (components/data/phrasing.py). "fixed": the
    # short templates alone (phrasing "fixed" with hard_split "query" is the data of data.dvc
    # before issue 29, byte for byte: configs/world-v1.yaml).
    phrasing: str = "varied"
    # Queries of the "dev" split, drawn after everything else from streams of their own (the train
    # and eval rows stay byte-identical with 0): training queries' intents and relevant items said
    # again as tonight's traffic says them (with phrasing "varied": the eval queries' phrasing
    # distribution, held-out patterns and wordings included). No trainer reads them (the reasoning
    # router can be fitted on them: routing.use_dev). Per category: this share of its training queries, each once.
    dev_fraction: float = 0.25


@dataclass
class DataConfig:
    """Where the versioned data lives and which DVC revision a run reads."""

    repo: Optional[str] = None  # git+DVC repo holding data.dvc (None: this repository)
    dvc_rev: Optional[str] = None  # None: the working tree's data.dvc
    # After the pull, optionally keep only the first N items / queries (tiny test runs).
    # Items judged relevant to a kept query are always kept.
    max_items: Optional[int] = None
    max_queries: Optional[int] = None  # after the pull, keep only the first N queries (None: all; tiny test runs)


@dataclass
class TeacherConfig:
    """Query-CoT-Item triplet generation."""

    max_cot_tokens: int = 16  # at most this many words in the teacher's keyword CoT
    max_items_per_query: int = 4  # triplets per (query) kept from its relevant items
    seed: int = 7  # seed of the teacher's per-query random choices
    # "retriever_then_judged": judged-relevant items of B minus A (B: top-k for "query (keywords)",
    # A: top-k for the query), falling back to the judged-relevant items when that is empty;
    # "retriever": the paper's rule, the query is dropped when B minus A has no relevant item;
    # "judged": judged-relevant items only.
    item_filter: str = "retriever_then_judged"
    # BM25 depth of the teacher's two retrievals (B: "query (keywords)", A: the query); 50 found one
    # product type only for 153 of 160 multi-type queries
    retriever_top_k: int = 200
    # which of a query's kept items become its triplets (at most max_items_per_query):
    # "top": the first in the retriever's order; "spread": round robin over the product types
    # of the kept items (in the retriever's order within a type), so a query whose relevant
    # items span two or three types trains toward all of them
    item_select: str = "spread"
    # terms never kept as CoT keywords (words that say nothing about the product)
    banned_terms: list[str] = field(default_factory=lambda: [
        "best", "cheap", "sale", "discount", "deal", "free shipping", "official store", "buy", "online"])


@dataclass
class ModelConfig:
    """The LREM backbone. ``base: tiny`` builds a small Qwen2 LM from config."""

    base: str = "tiny"  # "tiny" or a Hugging Face model dir / hub id (e.g. Qwen/Qwen2.5-3B-Instruct)
    vocab_size: int = 4000  # tiny: BPE vocabulary trained on the backbone's pre-training corpus
    # tiny: the BPE lowercases and puts a space before the first word, so a word has one
    # spelling in tokens wherever it stands (query start, inside a query, title, knowledge)
    tokenizer_normalize: bool = True
    # tiny: hidden width (4 layers of 256: 3.4M parameters, chosen from the size sweep in docs/model.md,
    # "A backbone sized to learn")
    hidden_size: int = 256
    intermediate_size: int = 512  # tiny: width of each layer's MLP
    num_hidden_layers: int = 4  # tiny: decoder layers
    num_attention_heads: int = 4  # tiny: attention heads
    num_key_value_heads: int = 2  # tiny: key/value heads (grouped-query attention)
    max_position_embeddings: int = 512  # tiny: the longest sequence, in tokens
    max_cot_tokens: int = 16  # the longest CoT the model generates before <emb>, in tokens
    pooling: str = "emb_token"  # "emb_token" (LREM) or "mean" (direct-embedder baseline)
    # "auto": the short template for the tiny backbone, the paper's chat prompt for a HF checkpoint
    prompt_style: str = "auto"
    # ends like the backbone's knowledge sentences ("<use>: a <type> does that."), so the model
    # continues the query with what it knows (experiments/probes/template_probe.py: the backbone
    # alone names a relevant type for 93% of eval qa queries after "q: {query}:", 7% after "q: {query}")
    short_query_template: str = "q: {query}:"
    short_item_template: str = "i: {title}"  # the short style's item prompt ({title}: the item's title); <emb> follows
    max_query_tokens: int = 48  # query prompts are cut to this many tokens
    max_item_tokens: int = 64  # item prompts are cut to this many tokens
    seed: int = 0  # seed of the tiny backbone's initialisation


@dataclass
class BackboneConfig:
    """Pre-training of the tiny backbone: a causal LM on text rendered from the data.

    Stands in for the paper's pretrained LLM (no weights can be downloaded here): catalog
    titles and attributes, training queries, and the world's knowledge as plain sentences.
    Cached by corpus hash and this config; skipped for a HF checkpoint (``model.base``).
    """

    steps: int = 600  # pre-training optimizer steps
    batch_size: int = 32  # packed sequences per pre-training step
    seq_len: int = 96  # tokens per packed pre-training sequence
    learning_rate: float = 1e-3  # pre-training learning rate (AdamW, cosine schedule)
    weight_decay: float = 0.01  # AdamW weight decay in pre-training
    warmup_ratio: float = 0.05  # share of the pre-training steps that warm the learning rate up
    heldout_fraction: float = 0.05  # share of the catalog item descriptions held out to measure LM loss
    # the world's knowledge also said in other phrasings (entity first and last, glossary lines),
    # so that fine-tuning can get it out again (experiments/results/probes.md)
    knowledge_paraphrases: bool = True
    # how often the knowledge sentences (and paraphrases) are repeated in the corpus
    knowledge_repeats: int = 3
    # the training queries with their teacher CoT, in the query prompt format, mixed into the
    # pre-training text ("mixed training"; never eval queries)
    train_cots: bool = False
    log_every: int = 50  # pre-training metrics logged every this many steps
    seed: int = 0  # seed of the pre-training (held-out split, shuffling)
    # MLflow registered model of the pre-trained backbone (a machine without the local cache restores it from
    # there)
    registered_name: str = "lrem-backbone"


@dataclass
class ColdStartConfig:
    """Stage 1: 0.1 x SFT (CoT tokens) + 1.0 x InfoNCE (in-batch negatives, cosine / T)."""

    lambda_sft: float = 0.1  # weight of the SFT loss on the teacher's CoT tokens (the paper's 0.1)
    lambda_infonce: float = 1.0  # weight of the InfoNCE loss
    temperature: float = 0.05  # InfoNCE temperature (cosine similarity / T)
    learning_rate: float = 5e-4  # AdamW learning rate (configs/demo.yaml: 1e-3 for the tiny backbone)
    weight_decay: float = 0.01  # AdamW weight decay (none on biases and norms)
    warmup_ratio: float = 0.03  # share of the steps that warm the learning rate up (cosine schedule)
    batch_size: int = 64  # (query, item) pairs per step; the other pairs' items are in-batch negatives
    grad_accum_steps: int = 1  # batches accumulated per optimizer step
    max_grad_norm: float = 1.0  # gradient-norm clip
    epochs: float = 1.0  # passes over the triplets, when max_steps is not set
    max_steps: Optional[int] = None  # overrides epochs when set
    # extra negatives per query: items of the positive's product type that differ in a field the
    # query names (brand, attribute value); queries naming none get none (TripletDataset)
    hard_negatives: int = 0
    # "batch": a hard negative is a negative of every query in the batch; "query": of its own query only
    hard_negative_scope: str = "batch"
    # in-batch negatives that the judgments list as relevant to the query (another query's
    # positive of the same product type, often) are masked instead of pushed away; lifted the
    # hard categories of the LREM and of the direct embedder (probes.md, "two fixes to the training data")
    mask_judged_negatives: bool = True
    reasoning: bool = True  # False: train a direct embedder (empty CoT; use lambda_sft 0)
    # SFT warm-up: the first sft_warmup_ratio of the steps weigh SFT by sft_warmup_lambda (the
    # paper's 0.1 x SFT alone does not teach a small backbone its CoT within a CPU budget)
    sft_warmup_ratio: float = 0.0
    sft_warmup_lambda: float = 1.0  # SFT weight during the warm-up (the first sft_warmup_ratio of the steps)
    sft_warmup_infonce: bool = True  # False: the warm-up is SFT alone (no item encoding: about 2x faster steps)
    # share of the steps (after the warm-up) whose InfoNCE embeds the query after the model's
    # own greedy CoT instead of the teacher's: evaluation embeds after the model's own CoT
    self_cot_ratio: float = 0.0
    # share of the InfoNCE examples (after the warm-up) embedded after ANOTHER query's CoT: the
    # embedding learns not to follow a CoT that contradicts its query (at evaluation the model's
    # own CoT is sometimes wrong, in training it almost never is)
    wrong_cot_ratio: float = 0.0
    # rehearsal of the backbone's pre-training text: each step adds lm_replay_weight x the
    # causal-LM loss on lm_replay_batch packed sequences of it. Without it the cold start's
    # SFT at lr 1e-3 erases what the backbone knows (probes.md: uses it could name 15 of 15,
    # after the cold start 0 of 15), and the CoT cannot reason with it. 0: off.
    lm_replay_weight: float = 0.0
    lm_replay_batch: int = 16  # packed sequences of pre-training text rehearsed per step
    lm_replay_seq_len: int = 96  # tokens per rehearsed sequence
    log_every: int = 10  # training metrics logged every this many steps
    save_every: int = 200  # checkpoint every this many optimizer steps (0: none)
    resume: bool = True  # a rerun resumes from the last checkpoint in its output dir
    seed: int = 0  # seed of the shuffling and sampling
    bf16: str = "auto"  # auto: bf16 when a CUDA GPU is present
    gradient_checkpointing: str = "auto"  # auto: on when a CUDA GPU is present


@dataclass
class GRPOStageConfig:
    """Stage 2: GRPO with TRL on the cold-start model (the paper: G = 8, 0.1 x InfoNCE kept on)."""

    max_steps: int = 60  # GRPO optimizer steps
    num_generations: int = 8  # G completions per query
    # policy updates per generation batch (TRL's num_iterations, the mu of GRPO): above 1, each
    # batch of sampled CoTs is reused and the clipped ratio against the sampling policy applies
    num_iterations: int = 1
    per_device_batch_size: int = 64  # completions; divisible by num_generations (64 = 8 queries x 8)
    # GRPO learning rate (probes.md: 5e-5 cost the template's cold start 0.020 on hard, 2e-5 did not)
    learning_rate: float = 2e-5
    temperature: float = 1.0  # sampling temperature of the G completions
    # rewards by name, weighted by reward_weights: format (well-formed CoT), length (CoT within
    # max_cot_tokens), accuracy (rank of the judged-relevant items)
    reward_funcs: list[str] = field(default_factory=lambda: ["format", "length", "accuracy"])
    # weight of each of reward_funcs (the paper's 0.5, 0.2, 1.0)
    reward_weights: list[float] = field(default_factory=lambda: [0.5, 0.2, 1.0])
    reward_pool_size: int = 256  # N catalog items in the accuracy reward's ranking (0: the whole catalog)
    reward_refresh_steps: int = 10  # whole-catalog pool: item embeddings recomputed every this many steps
    lambda_infonce: float = 0.1  # the paper's InfoNCE term during RL (0: GRPO alone)
    # the InfoNCE term's negatives judged relevant to the query masked, as in the cold start (the
    # G completions of a query carry its other teacher-kept items as their positives). Off: on the
    # experiment's cold start GRPO gained +0.0029 on hard with it, +0.0048 without (probes.md)
    mask_judged_negatives: bool = False
    # RL prompts: this share of the training queries, those whose own greedy CoT the cold-start
    # model ranks worst against the whole catalog (the paper picks queries where retrieval does badly)
    hard_prompt_share: float = 1.0
    infonce_temperature: float = 0.05  # temperature of the InfoNCE term
    infonce_negatives: int = 64  # random catalog items added to the in-batch negatives
    # the RL InfoNCE term's positive for a completion: "first": the query's first teacher-kept
    # item, always; "random": one of its teacher-kept items drawn per completion, so the G
    # completions of a query pull towards its several items, as the cold start's batches do
    # (probes.md, "GRPO on that cold start": "first" pulled each query to one item and cost 0.014
    # HitRate@100 on the hard categories in 100 steps; "random" left the cold start's level intact)
    infonce_positive: str = "random"
    # how a group's rewards become advantages (TRL's scale_rewards): "group" divides by the
    # group's reward std (GRPO as published); "batch" by the batch's; "none" does not divide
    # (Dr. GRPO): a group whose completions differ by a hair then moves the policy by a hair
    scale_rewards: str = "group"
    # share of the training queries set aside for RL: the cold start never sees them, GRPO
    # trains on them only (0: both stages use every training query)
    rl_query_share: float = 0.0
    # rehearsal of the backbone's pre-training text during RL, as in the cold start: each
    # loss adds lm_replay_weight x the causal-LM loss on lm_replay_batch packed sequences
    # (GRPO's policy updates otherwise drift the LM away from what the CoT reasons with). 0: off.
    lm_replay_weight: float = 0.0
    lm_replay_batch: int = 16  # packed sequences of pre-training text rehearsed per step
    lm_replay_seq_len: int = 96  # tokens per rehearsed sequence
    # checkpoint every this many GRPO steps in the run's scratch (<run dir>/grpo/checkpoints; 0: none);
    # a rerun of the step for the same run resumes from the last complete one (docs/scaling.md).
    # A multiple of num_iterations (a checkpoint between two updates on one generation batch
    # would have to hold the sampled completions)
    save_every: int = 20
    seed: int = 0  # seed of GRPO's sampling and shuffling


@dataclass
class TrackingConfig:
    # MLflow tracking URI: $LREM_MLFLOW_URI, else SQLite under the state dir
    mlflow_uri: str = field(default_factory=default_mlflow_uri)
    experiment: str = "lrem-nightly"  # MLflow experiment of the nightly runs (audit: <experiment>-serving-audit)
    model_name: str = "lrem-retriever"  # the registered model the pipeline registers, aliases and serves


@dataclass
class IndexConfig:
    # Milvus URI: $LREM_MILVUS_URI, else the embedded Milvus Lite server
    milvus_uri: str = field(default_factory=default_milvus_uri)
    collection_prefix: str = "lrem_items_v"  # model version V's items go to the collection <prefix>V
    serving_alias: str = "lrem_serving"  # the Milvus alias on the champion's collection; the service searches it
    index_type: str = "HNSW"  # Milvus index type of each collection (FLAT: exact search)
    metric_type: str = "COSINE"  # Milvus similarity metric
    batch_size: int = 256  # items embedded and inserted per batch
    # nightly clean-up: collections of the last N champions are kept (besides champion,
    # challenger and whatever an alias points at); older ones are dropped
    keep_last_champions: int = 3
    # build_index splits the catalog's encoding into this many shards (parallel Airflow tasks, each
    # writing its embeddings to the run's scratch; docs/scaling.md); 1: one shard
    shards: int = 1


@dataclass
class ComputeConfig:
    """Resources of the GPU steps in production (``LREM_EXECUTION=kubernetes``; docs/scaling.md)."""

    # GPUs of each GPU step's pod; the training steps run `accelerate launch` with one process a GPU
    gpus: int = 1


@dataclass
class EvalConfig:
    # the K of each HitRate@K the offline evaluation reports
    hit_ks: list[int] = field(default_factory=lambda: [10, 50, 100])
    precision_k: int = 10  # the K of Precision@K
    batch_size: int = 64  # queries embedded per batch (items: twice as many)


@dataclass
class ValidationConfig:
    """The raw-data gate (``validate_raw``): outlier bounds, the grade scale, drift bounds (docs/data-contract.md)."""

    max_title_chars: int = 500  # a catalog title longer than this fails validate_raw
    max_query_chars: int = 400  # a query longer than this fails validate_raw
    # the relevance scale judgments.jsonl may use (its optional `relevance`; absent means 1)
    min_relevance: int = 1
    max_relevance: int = 3  # the highest relevance grade judgments.jsonl may use
    # Drift against the last snapshot that passed the gate (its figures: drift_baseline, written
    # after each pass). Each bound: null turns it off. Fractions of the last good figure (rows)
    # or absolute changes of a share (mix, null rates, changed titles).
    drift_max_rows_drop: Optional[float] = 0.2  # any file losing more than 20% of its rows
    drift_max_rows_growth: Optional[float] = 1.0  # any file more than doubling
    drift_max_category_share_change: Optional[float] = 0.1  # a query category's share (a vanished one always fails)
    drift_max_split_share_change: Optional[float] = 0.05  # the eval split's share of the train and eval queries
    drift_max_null_rate_increase: Optional[float] = 0.05  # any contract column's share of missing values
    drift_max_changed_titles: Optional[float] = 0.1  # items kept whose title changed (sample of drift_title_sample)
    drift_title_sample: int = 5000  # items (the same ones every night: smallest id hashes) whose titles are compared
    drift_baseline: Optional[str] = None  # None: <state dir>/validation/last_good_<config name>.json
    # drift bounds this run may exceed (an intended change): names from DRIFT_BOUNDS or "all";
    # set by the run conf {"allow_drift": true | [...]}, logged as a param and the tag drift_allowed
    allow_drift: list[str] = field(default_factory=list)


@dataclass
class GateConfig:
    metric: str = "hit_rate@100"  # the offline metric the gate tests
    # each test's null: effect (challenger - champion) >= -tolerance; a veto needs Holm to reject it
    tolerance: float = 0.0
    alpha: float = 0.05  # family-wise error of one night's decision (Holm over every test; docs/gate.md)
    margin: float = 0.03  # smallest regression of the gate metric that matters: power and MDE are stated at it
    category_margins: dict[str, float] = field(default_factory=dict)  # per-category margin (default: margin)
    # each category's null: effect >= -category_tolerance (null: the overall tolerance). 0.03, the margin: a
    # category vetoes only a regression shown to exceed the smallest that matters (adopted by its registered
    # check, docs/gate.md: A/A' false vetoes 1.0% of demo nights, power at 0.03 overall 98.3%)
    category_tolerance: Optional[float] = 0.03
    min_queries: int = 30  # a group with fewer eval queries is reported, not tested
    power: float = 0.8  # target power (MDE, interleaving's minimum of decided queries)
    online_margin: float = 0.1  # smallest regression of judged-click HitRate@online.k that matters
    interleaving_margin: float = 0.05  # a challenger preference of 0.5 - this is a loss that matters
    # an inconclusive challenger (not vetoed, offline CI not above 0) is kept, not promoted, and its
    # online evidence pooled over the nights it is compared (always-valid mSPRT; docs/gate.md)
    sequential: bool = False
    # gate.sequential: the most nights one kept pair is compared (the first included); a pair still
    # inconclusive on its last night is dropped (the champion stays) and the next night trains again
    sequential_max_nights: int = 10


@dataclass
class ServeConfig:
    """`lrem serve`: the search service, its input bounds, micro-batching and registry polling."""

    host: str = "127.0.0.1"  # address the service listens on
    port: int = 8765  # port the service listens on
    max_query_chars: int = 512  # longer queries get a 422
    max_user_id_chars: int = 128  # a longer user_id gets a 422
    max_body_bytes: int = 16384  # larger request bodies get a 413
    min_k: int = 1  # the smallest k a search may ask for (below: 422)
    max_k: int = 100  # the largest k a search may ask for (above: 422)
    default_k: int = 10  # k of a search that gives none
    reasoning: bool = True  # False: direct (empty-CoT) query embedding
    max_batch: int = 8  # queries generated together across concurrent requests
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    poll_seconds: float = 10.0  # registry polling for alias moves
    # SQLAlchemy URL; None: sqlite under <state>/serving/events.db. Default: $LREM_EVENT_STORE_URL
    # (`make up` points it at the stack's Postgres)
    event_store_url: Optional[str] = field(default_factory=lambda: os.environ.get("LREM_EVENT_STORE_URL") or None)
    recent_requests: int = 100000  # request ids kept in memory for feedback validation (the store is the fallback)
    # CoT/embedding cache, keyed by (model version, normalised query); 0 turns it off (docs/serving-cost.md)
    cache_size: int = field(default=20000, metadata={"help": "entries of the in-process CoT/embedding LRU cache"})
    warm_top_n: int = field(default=1000, metadata={"help": "head queries the nightly run precomputes (warm_cache)"})
    warm_days: float = field(default=7.0, metadata={"help": "days of the event store's searches warm_cache counts"})
    # False: ignore the registered model's router (every reasoning request reasons). For measuring the
    # router's effect only: offline evaluation, the gate and the A/B see the model's routing.
    routing: bool = True


@dataclass
class RoutingConfig:
    """`train_router`: when a query reasons, learned each night (components/routing, docs/serving-cost.md)."""

    enabled: bool = field(default=True, metadata={"help": "train a router; false: the model always reasons"})
    holdout_share: float = field(default=0.0, metadata={"help": (
        "share of the training queries held out of the teacher's triplets (so of the backbone corpus, cold start, "
        "GRPO and direct baseline) for the router to be fitted on: per category, the hard ones by whole intent "
        "when the data has intent ids; 0: the router is fitted on the trained queries (it learns their gain, not "
        "that of unseen queries), or with use_dev on the dev queries. Only when a router is trained. Default 0: at 0.15 the demo's router "
        "reasoned on 4% of eval queries and lost HitRate@100 (docs/serving-cost.md, 3.2)")})
    use_dev: bool = field(default=True, metadata={"help": (
        "fit the router on the data's dev queries when it has them (split \"dev\": labelled queries phrased as the "
        "traffic is, which no trainer reads; world.dev_fraction), else on the training queries; holdout_share > 0 "
        "takes precedence. Default true with the reference features (docs/serving-cost.md, 3.6); with the shipped "
        "features of before and reason_share 0.4 it lost HitRate@100 on 2 of 3 training seeds (3.5)")})
    reason_share: Optional[float] = field(default=None, metadata={"help": (
        "a reasoning budget: the threshold makes the router reason on this share of its fitting queries, those with "
        "the highest out-of-fold scores (the tolerance rule is still reported); null: the threshold is the tolerance "
        "rule's (fewest reasoning queries keeping HitRate@hit_k). Measured with use_dev: docs/serving-cost.md, 3.5")})
    traffic_budget: Optional[float] = field(default=0.45, metadata={"help": (
        "rule C: after the fit, the threshold makes the router reason on this share of the served traffic's "
        "distinct queries (the event store's last traffic_days days, scored before reasoning, no labels read); "
        "null, or fewer than traffic_min_queries of them: the fitted rule's threshold. Default 0.45, adopted by "
        "its registered check: at most half of the eval queries reasoning with HitRate@100 inside the CI on 3 of 3 "
        "fresh training seeds (docs/serving-cost.md, 3.7)")})
    traffic_days: float = 7.0  # days of the event store's searches the traffic budget is set on
    traffic_min_queries: int = 100  # distinct traffic queries needed for the traffic budget (else the fitted rule)
    reference_features: bool = field(default=True, metadata={"help": (
        "features from the direct retrieval: the direct embedding's top-1/10/100 cosines against the catalog's items "
        "and their gaps, and its highest cosine to a training query (embeddings stored with the router, "
        "router_refs.npz). Default true: out-of-fold AUC 0.90-0.93 on dev against 0.72-0.80 without "
        "(docs/serving-cost.md, 3.6)")})
    reference_items: int = 20000  # catalog items the reference features search (a seeded sample when larger)
    direct_embedding: bool = field(default=False, metadata={"help": (
        "the direct embedding itself as router features (the routers before docs/serving-cost.md 3.6); "
        "default false: with a few hundred fitting queries it overfits")})
    hit_k: int = 100  # the HitRate@k the router keeps
    tolerance: float = 0.0  # HitRate@k the routing may lose against always reasoning (out-of-fold, fitted queries)
    max_queries: Optional[int] = 2000  # fitting queries (dev, held-out or training) measured (sampled); None: all
    folds: int = 5  # cross-validation folds: the threshold is set on out-of-fold scores
    c: float = 1.0  # inverse L2 strength of the logistic regression
    # 0: the threshold is the first crossing of the out-of-fold curve (fewest reasoning queries that keep
    # HitRate); N: the median of that rule's thresholds over N bootstrap resamples (docs/serving-cost.md, 3.3:
    # adopted by its registered rule, the reason share's SD over fold seeds 0.107 -> 0.070)
    threshold_bags: int = 200
    # with threshold_bags: which quantile of the bagged cuts is the threshold (0.5: the median, the rule of 3.3);
    # lower: a lower cut, more queries reason where the resamples disagree (docs/serving-cost.md 3.6, rule B)
    threshold_quantile: float = 0.5
    # paired bootstrap resamples of the router's eval report (routed minus always-reasoning, per category)
    bootstrap_samples: int = 2000
    seed: int = 0  # the held-out queries, their sample and the cross-validation folds


@dataclass
class OnlineConfig:
    """Online A/B: traffic split, replay with simulated users, analysis."""

    experiment: str = "lrem-ab"  # also the salt of the user hash
    salt: str = ""  # empty: the experiment name
    challenger_share: float = 0.5  # share of the users the A/B split sends to the challenger
    mode: str = "split"  # "split" (A/B by user hash) or "interleave" (team-draft, both arms)
    n_users: int = 200  # simulated users in a replay
    max_requests: int = 400  # a replay stops after this many searches
    max_seconds: float = 300.0  # a replay stops after this many seconds
    concurrency: int = 4  # simulated searches in flight at once
    k: int = 10  # results per replayed search (the online metric is judged-click HitRate@k)
    examine_decay: float = 1.0  # P(examine rank r) = 1 / r ** examine_decay (position bias)
    click_relevant: float = 0.9  # P(click | examined, judged relevant)
    click_irrelevant: float = 0.05  # P(click | examined, not judged relevant)
    purchase_given_click: float = 0.3  # P(purchase | click on a relevant item)
    alpha: float = 0.05  # significance level of the tests
    srm_alpha: float = 0.001  # sample-ratio mismatch is flagged below this p-value
    seed: int = 0  # seed of the simulated users' queries and clicks


@dataclass
class PipelineConfig:
    name: str = "demo"  # the config's name: the summary's title, and the key of its raw-data drift baseline
    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    grpo: GRPOStageConfig = field(default_factory=GRPOStageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``section.field -> value``, for ``mlflow.log_params``."""
        out: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            if isinstance(values, dict):
                for key, value in values.items():
                    out[f"{section}.{key}"] = value
            else:
                out[section] = values
        return out


# Choice-like fields: "section.field" -> allowed values (for a list, of each element).
# Checked whenever a PipelineConfig is built (load_config or in code).
HARD_SPLITS = ("query", "intent")
PHRASINGS = ("fixed", "varied")

CHOICES: dict[str, tuple[str, ...]] = {
    "world.hard_split": HARD_SPLITS,
    "world.phrasing": PHRASINGS,
    "teacher.item_filter": ITEM_FILTERS,
    "teacher.item_select": ITEM_SELECTS,
    "model.pooling": POOLINGS,
    "model.prompt_style": ("auto", *PROMPT_STYLES),
    "grpo.reward_funcs": REWARD_NAMES,
    "grpo.infonce_positive": ("first", "random"),
    "grpo.scale_rewards": ("group", "batch", "none"),
    "cold_start.hard_negative_scope": ("batch", "query"),
    "cold_start.bf16": GPU_SWITCHES,
    "cold_start.gradient_checkpointing": GPU_SWITCHES,
    "validation.allow_drift": ("all", *DRIFT_BOUNDS),
}


def gate_metrics(cfg: PipelineConfig) -> list[str]:
    """The metrics the offline evaluation computes, i.e. what ``gate.metric`` may name."""
    # ndcg@10 and recall@100: retrieval_metrics' defaults (components.evaluation.metrics)
    return [f"hit_rate@{k}" for k in cfg.eval.hit_ks] + [f"precision@{cfg.eval.precision_k}", "ndcg@10", "recall@100"]


def _choice_error(key: str, value: Any, allowed: Any) -> ConfigError:
    return ConfigError(f"{key}: {value!r} is not allowed; choose from: {', '.join(map(str, allowed))}")


def check_config(cfg: PipelineConfig) -> None:
    """Raise a ConfigError naming the field and the allowed values for any out-of-choice value."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        for item in value if isinstance(value, list) else [value]:
            if item not in allowed:
                raise _choice_error(key, item, allowed)
    for key, value, upper in (("cold_start.sft_warmup_ratio", cfg.cold_start.sft_warmup_ratio, 1.0),
                              ("cold_start.self_cot_ratio", cfg.cold_start.self_cot_ratio, 1.0),
                              ("cold_start.wrong_cot_ratio", cfg.cold_start.wrong_cot_ratio, 1.0),
                              ("grpo.rl_query_share", cfg.grpo.rl_query_share, 0.99),
                              ("routing.holdout_share", cfg.routing.holdout_share, 0.9)):
        if not 0.0 <= float(value) <= upper:
            raise ConfigError(f"{key}: {value!r} must be between 0 and {upper}")
    for section in ("cold_start", "grpo"):
        sc = getattr(cfg, section)
        if sc.lm_replay_weight < 0 or sc.lm_replay_batch < 1 or sc.lm_replay_seq_len < 2:
            raise ConfigError(f"{section}.lm_replay_weight must be >= 0, lm_replay_batch >= 1 and lm_replay_seq_len "
                              f">= 2; got {sc.lm_replay_weight}, {sc.lm_replay_batch} and {sc.lm_replay_seq_len}")
    if cfg.backbone.knowledge_repeats < 0:
        raise ConfigError(f"backbone.knowledge_repeats: {cfg.backbone.knowledge_repeats!r} must be >= 0")
    if cfg.grpo.reward_pool_size < 0 or cfg.grpo.reward_refresh_steps < 1:
        raise ConfigError(f"grpo.reward_pool_size must be >= 0 (0: the whole catalog) and grpo.reward_refresh_steps "
                          f">= 1; got {cfg.grpo.reward_pool_size} and {cfg.grpo.reward_refresh_steps}")
    if cfg.index.shards < 1 or cfg.compute.gpus < 0:
        raise ConfigError(f"index.shards must be >= 1 and compute.gpus >= 0; got {cfg.index.shards} and "
                          f"{cfg.compute.gpus}")
    if cfg.grpo.num_iterations < 1:
        raise ConfigError(f"grpo.num_iterations: {cfg.grpo.num_iterations!r} must be >= 1")
    if cfg.routing.reference_items < 1:
        raise ConfigError(f"routing.reference_items: {cfg.routing.reference_items!r} must be at least 1")
    if cfg.routing.reason_share is not None and not 0.0 <= cfg.routing.reason_share <= 1.0:
        raise ConfigError(f"routing.reason_share: {cfg.routing.reason_share!r} must be between 0 and 1 (or null)")
    if cfg.routing.traffic_budget is not None and not 0.0 <= cfg.routing.traffic_budget <= 1.0:
        raise ConfigError(f"routing.traffic_budget: {cfg.routing.traffic_budget!r} must be between 0 and 1 (or null)")
    if cfg.routing.traffic_days <= 0 or cfg.routing.traffic_min_queries < 1:
        raise ConfigError(f"routing.traffic_days ({cfg.routing.traffic_days!r}) must be > 0 and "
                          f"routing.traffic_min_queries ({cfg.routing.traffic_min_queries!r}) >= 1")
    if not 0.0 <= cfg.world.dev_fraction <= 1.0:
        raise ConfigError(f"world.dev_fraction: {cfg.world.dev_fraction!r} must be between 0 and 1")
    if not 0.0 <= cfg.routing.threshold_quantile <= 1.0:
        raise ConfigError(f"routing.threshold_quantile: {cfg.routing.threshold_quantile!r} must be between 0 and 1")
    if cfg.routing.threshold_bags < 0:
        raise ConfigError(f"routing.threshold_bags: {cfg.routing.threshold_bags!r} must be >= 0 (0: no bagging)")
    if cfg.grpo.save_every < 0 or cfg.grpo.save_every % cfg.grpo.num_iterations:
        raise ConfigError(f"grpo.save_every: {cfg.grpo.save_every!r} must be >= 0 (0: no checkpoints) and a multiple "
                          f"of grpo.num_iterations ({cfg.grpo.num_iterations}): a checkpoint between two updates "
                          "on one generation batch would have to hold its sampled completions")
    if len(cfg.grpo.reward_weights) != len(cfg.grpo.reward_funcs):
        raise ConfigError(f"grpo.reward_weights: {len(cfg.grpo.reward_weights)} weights for "
                          f"{len(cfg.grpo.reward_funcs)} reward_funcs {cfg.grpo.reward_funcs}")
    if cfg.gate.metric not in gate_metrics(cfg):
        raise _choice_error("gate.metric", cfg.gate.metric, gate_metrics(cfg))
    g = cfg.gate
    if not (0 < g.alpha < 1 and 0 < g.power < 1 and 0 < g.interleaving_margin < 0.5 and g.min_queries >= 2
            and min([g.margin, g.online_margin, g.tolerance, *g.category_margins.values(),
                     *([] if g.category_tolerance is None else [g.category_tolerance])]) >= 0):
        raise ConfigError(f"gate: need 0 < alpha < 1, 0 < power < 1, 0 < interleaving_margin < 0.5, min_queries >= 2 "
                          f"and margins, tolerance >= 0; got alpha {g.alpha}, power {g.power}, interleaving_margin "
                          f"{g.interleaving_margin}, min_queries {g.min_queries}, margin {g.margin}, online_margin "
                          f"{g.online_margin}, tolerance {g.tolerance}, category_margins {g.category_margins}, "
                          f"category_tolerance {g.category_tolerance}")
    if not 1 <= cfg.validation.min_relevance <= cfg.validation.max_relevance:
        raise ConfigError(f"validation.min_relevance and max_relevance: need 1 <= min <= max; got "
                          f"{cfg.validation.min_relevance} and {cfg.validation.max_relevance}")


def _build(cls: type, values: dict[str, Any], where: str, key: str = "") -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        field_key = f"{key}.{name}" if key else name
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping, got {value!r}")
            kwargs[name] = _build(hint, value, f"{where}.{name}", field_key)
        else:
            if isinstance(value, bool) and str(value).lower() in CHOICES.get(field_key, ()):
                value = str(value).lower()  # YAML reads `bf16: true` as a boolean
            kwargs[name] = _coerce(hint, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    if origin is not None and len(args) == 1 and origin not in (list, dict):  # Optional[X]
        return _coerce(args[0], value, where)
    if hint is float and isinstance(value, (int, float)):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _read_config_file(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's values; with a top-level ``extends: <file>`` (relative to this file's folder)
    that file's values first, each section of this one updating the base's section field by field
    (a section that is not a mapping replaces the base's)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path.name}: extends itself ({' -> '.join(p.name for p in (*chain, path))})")
    if not path.is_file():
        where = f" (extended by {chain[-1].name})" if chain else ""
        raise ConfigError(f"{path}: no such config file{where}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path.name}: a config is a mapping of sections, not {type(values).__name__}")
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path.name}: extends: {base!r} must name one config file")
    merged = _read_config_file(path.parent / base, (*chain, path))
    for section, sub in values.items():
        if isinstance(sub, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **sub}
        else:
            merged[section] = sub
    return merged


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML config (relative paths resolve against the repo root; ``extends: <file>`` builds on
    another config, :func:`_read_config_file`).

    ``overrides`` is a nested mapping applied on top of the file (used by tests).
    """
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_absolute() and not p.exists():
            p = REPO_ROOT / p
        values = _read_config_file(p)
    for section, sub in (overrides or {}).items():
        if isinstance(sub, dict):
            values.setdefault(section, {}).update(sub)
        else:
            values[section] = sub
    return _build(PipelineConfig, values, str(path or "config"))


def config_from_env() -> PipelineConfig:
    """Config named by ``$LREM_CONFIG`` (default ``configs/demo.yaml``)."""
    return load_config(os.environ.get("LREM_CONFIG", "configs/demo.yaml"))
