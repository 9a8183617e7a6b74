"""Probe: how many premium-brand -> product-type facts a pre-trained backbone can say back.

python experiments/probes/fact_recall.py BACKBONE_DIR DATA_DIR
Greedy completion of "<brand> is a premium maker of" (the corpus's own sentence) and of
"<brand>:" (a paraphrase's form); a fact counts as recalled when the product type's name
is in the completion. Prints both counts out of the premium brands in knowledge.json.
"""
import json
import sys

import torch

from components.model.lrem import LREMModel

torch.set_num_threads(1)
model = LREMModel.load(sys.argv[1])
knowledge = json.load(open(f"{sys.argv[2]}/knowledge.json"))
lm, tok = model.lm, model.tokenizer
lm.eval()
counts = {"sentence": 0, "colon": 0}
for brand, info in sorted(knowledge["premium_brands"].items()):
    kind = info["product_type"].lower()
    for form, prompt in (("sentence", f"{brand.lower()} is a premium maker of"), ("colon", f"{brand.lower()}:")):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        with torch.no_grad():
            out = lm.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=model.pad_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).lower()
        counts[form] += kind in text
print("FACT_RECALL", json.dumps(counts), "of", len(knowledge["premium_brands"]), flush=True)
