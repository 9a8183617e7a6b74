"""The teacher: Query-CoT-Item triplets for the cold-start stage (paper: Qwen3-30B-A3B as teacher).

Here the teacher's reasoning is grounded in the world's ``knowledge.json`` instead of an
LLM, and the item filter uses a lexical (BM25) retriever over titles plus the judgments.
"""

from components.teacher.triplets import LexicalRetriever, Teacher, generate_triplets

__all__ = ["LexicalRetriever", "Teacher", "generate_triplets"]
