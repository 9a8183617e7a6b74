import math

import torch

from components.training.losses import in_batch_rank, info_nce


def test_info_nce_matches_hand_computed_3x3():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    i = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    t = 0.5
    # cosine (unit vectors) / t
    sims = [[0.8, 0.0, 1.0], [0.6, 1.0, 0.0], [0.96, 0.8, 0.6]]
    expected = 0.0
    for r in range(3):
        logits = [s / t for s in sims[r]]
        expected += -(logits[r] - math.log(sum(math.exp(x) for x in logits)))
    expected /= 3
    assert abs(info_nce(q, i, t).item() - expected) < 1e-5


def test_info_nce_masks_duplicate_items_as_negatives():
    q = torch.eye(2)
    i = torch.eye(2)
    masked = info_nce(q, i, 1.0, item_keys=["a", "a"])
    assert abs(masked.item()) < 1e-6  # the only "negative" is the same item: masked out


def test_info_nce_with_extra_hard_negatives():
    q = torch.eye(2)
    items = torch.cat([torch.eye(2), torch.tensor([[1.0, 0.0]])])
    plain = info_nce(q, items[:2], 1.0)
    harder = info_nce(q, items, 1.0, item_keys=["a", "b", "c"], n_positives=2)
    assert harder > plain


def test_info_nce_private_hard_negatives_count_for_their_own_query_only():
    import math

    q = torch.eye(2)
    items = torch.cat([torch.eye(2), torch.tensor([[1.0, 0.0]])])  # the extra item is mined for query 0
    private = info_nce(q, items, 1.0, item_keys=["a", "b", "c"], negative_owners=[0])
    # by hand: query 0 sees its positive (1), query 1's positive (0) and its negative (1);
    # query 1 sees query 0's positive (0) and its own (1), not query 0's negative
    e = math.e
    expected = 0.5 * (-math.log(e / (e + 1 + e)) - math.log(e / (1 + e)))
    assert abs(private.item() - expected) < 1e-5
    shared = info_nce(q, items, 1.0, item_keys=["a", "b", "c"])
    assert shared > private  # shared, it is a negative of query 1 too


def test_in_batch_rank():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    i = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert in_batch_rank(q, i).tolist() == [1, 2]


def test_info_nce_masks_judged_relevant_negatives_by_hand():
    q = torch.eye(2)
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    keys = ["a", "b", "c"]
    # item c is judged relevant to query 1 (not its positive): not a negative of query 1;
    # the diagonal stays even when the matrix marks it
    judged = torch.tensor([[True, False, False], [False, True, True]])
    masked = info_nce(q, items, 1.0, item_keys=keys, n_positives=2, judged=judged)
    e = math.e
    expected = 0.5 * (-math.log(e / (e + 1 + math.exp(0.6))) - math.log(e / (1 + e)))
    assert abs(masked.item() - expected) < 1e-5
    unmasked = info_nce(q, items, 1.0, item_keys=keys, n_positives=2)
    assert unmasked > masked
