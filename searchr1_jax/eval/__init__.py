"""Evaluation: the method harness (direct, CoT, RAG, Search-R1) and the paper-style table."""
from searchr1_jax.eval.harness import METHODS, EvalSettings, evaluate_all, evaluate_method
from searchr1_jax.eval.scoring import (METRICS, aggregate, score_response, table_markdown,
                                       write_results)

__all__ = ["METHODS", "EvalSettings", "evaluate_all", "evaluate_method", "METRICS",
           "aggregate", "score_response", "table_markdown", "write_results"]
