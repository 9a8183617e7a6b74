"""``mlflow.pyfunc`` wrapper: ``load_model("models:/<name>@<alias>").predict(df)``.

A DataFrame with a ``query`` column gets query embeddings (reasoning, greedy CoT) and
the CoT text; one with a ``title`` column gets item embeddings. The optional column
``reasoning`` (bool, same for all rows) switches the query side to direct embedding.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

LREM_ARTIFACT = "lrem"


class LREMPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from components.model.lrem import LREMModel

        self.model = LREMModel.load(context.artifacts[LREM_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if "query" in model_input.columns:
            reasoning = bool(model_input["reasoning"].iloc[0]) if "reasoning" in model_input.columns else True
            emb, cots = self.model.embed_queries(model_input["query"].astype(str).tolist(), reasoning=reasoning)
            return pd.DataFrame({"embedding": [e.tolist() for e in emb], "cot": cots})
        if "title" in model_input.columns:
            emb = self.model.embed_items(model_input["title"].astype(str).tolist())
            return pd.DataFrame({"embedding": [e.tolist() for e in emb]})
        raise ValueError(f"expected a 'query' or a 'title' column, got {list(model_input.columns)}")
