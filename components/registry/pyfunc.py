"""``mlflow.pyfunc`` wrapper: ``load_model("models:/<name>@<alias>").predict(df)``.

A DataFrame with a ``query`` column gets query embeddings (reasoning, greedy CoT) and
the CoT text; one with a ``title`` column gets item embeddings. The optional column
``reasoning`` (bool, same for all rows) switches the query side to direct embedding.
A model registered with a router (``router.json``, step ``train_router``) routes its queries:
only those the router picks reason, exactly as the service, the evaluation and the gate do;
the column ``reasoned`` says which did. The optional column ``routing`` (bool) false makes
every query reason.
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
            routing = bool(model_input["routing"].iloc[0]) if "routing" in model_input.columns else True
            queries = model_input["query"].astype(str).tolist()
            if reasoning and routing:
                emb, cots, reasoned = self.model.embed_queries_routed(queries)
            else:
                emb, cots = self.model.embed_queries(queries, reasoning=reasoning, routing=False)
                reasoned = [reasoning] * len(queries)
            return pd.DataFrame({"embedding": [e.tolist() for e in emb], "cot": cots,
                                 "reasoned": [bool(r) for r in reasoned]})
        if "title" in model_input.columns:
            emb = self.model.embed_items(model_input["title"].astype(str).tolist())
            return pd.DataFrame({"embedding": [e.tolist() for e in emb]})
        raise ValueError(f"expected a 'query' or a 'title' column, got {list(model_input.columns)}")
