"""Runs the Search-R1-compatible retrieval server.

  python -m searchr1_jax.retrieval.serve --config=configs/retrieval_minilm.py \
      --config.retrieval.index_dir=runs/index_mini --config.retrieval.kind=scann
  curl -s 127.0.0.1:8000/retrieve -d '{"queries": ["who wrote hamlet"], "topk": 3,
      "return_scores": true}'

Binds ``retrieval.host`` (127.0.0.1 by default: expose it deliberately, it has no auth).
Without ``index_dir`` the index is built in memory from ``retrieval.corpus``.
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/retrieval_minilm.py",
                                          "ml_collections config file")
_LOG_LEVEL = flags.DEFINE_string("log_level", "info", "uvicorn log level")


def limits_from_config(rcfg):
    from searchr1_jax.retrieval.server import ServerLimits
    return ServerLimits(max_queries=rcfg.max_queries, max_topk=rcfg.max_topk,
                        default_topk=rcfg.topk)


def main(argv):
    del argv
    import uvicorn
    from searchr1_jax.retrieval.retriever import build_retriever
    from searchr1_jax.retrieval.server import create_app
    rcfg = _CONFIG.value.retrieval
    if rcfg.kind == "http":
        raise app.UsageError("retrieval.kind = 'http' is the client; serve bm25, exact or scann")
    retriever = build_retriever(rcfg)
    uvicorn.run(create_app(retriever, limits_from_config(rcfg)), host=rcfg.host, port=rcfg.port,
                log_level=_LOG_LEVEL.value)


if __name__ == "__main__":
    app.run(main)
