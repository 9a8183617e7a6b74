"""Offline evaluation: retrieval metrics, the HTML/plot report, and the promotion gate."""

from components.evaluation.gate import GateDecision, decide
from components.evaluation.metrics import flatten_metrics, mlflow_key, retrieval_metrics

__all__ = ["GateDecision", "decide", "flatten_metrics", "mlflow_key", "retrieval_metrics"]
