"""Builds a retrieval index directory from a corpus.

  python -m searchr1_jax.retrieval.build_index --config=configs/retrieval_minilm.py \
      --config.retrieval.corpus=hotpotqa_dev500 --out_dir=runs/index_hotpot --kinds=bm25,scann

Writes ``passages/`` (streamed passage store), then for each kind: ``bm25/`` (bm25s) or, for
``exact``/``scann``, ``embeddings/`` (resumable fp16 shards, see encode_corpus) and ``dense/``
plus ``retrieval.json`` (encoder settings). Re-running resumes the corpus encoding.
"""
from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from searchr1_jax.retrieval.corpus import PassageStore, iter_passages

_CONFIG = config_flags.DEFINE_config_file("config", "configs/retrieval_minilm.py",
                                          "ml_collections config file")
_OUT = flags.DEFINE_string("out_dir", None, "index directory (default: retrieval.index_dir)")
_KINDS = flags.DEFINE_list("kinds", None, "bm25, exact, scann (default: retrieval.kind)")


def build(rcfg, out_dir: str, kinds: list[str]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    store_dir = os.path.join(out_dir, "passages")
    if not os.path.exists(os.path.join(store_dir, "store.json")):
        n = PassageStore.write(iter_passages(rcfg.corpus), store_dir)
        print(f"passage store: {n} passages -> {store_dir}")
    store = PassageStore.load(store_dir)
    if "bm25" in kinds:
        from searchr1_jax.retrieval.bm25 import BM25Index
        BM25Index.build(store.iter_contents(), total=len(store)).save(os.path.join(out_dir, "bm25"))
        print(f"bm25 index -> {out_dir}/bm25")
    dense = [k for k in kinds if k in ("exact", "scann")]
    if len(dense) > 1:
        raise ValueError(f"--kinds: one dense index per directory, got {dense}")
    if dense:
        import jax
        from searchr1_jax.retrieval.encode_corpus import encode_corpus, load_embeddings
        from searchr1_jax.retrieval.index import ExactIndex, ScannIndex
        from searchr1_jax.retrieval.retriever import encoder_from_config
        encoder = encoder_from_config(rcfg)
        emb_dir = os.path.join(out_dir, "embeddings")
        stats = encode_corpus(encoder, iter_passages(rcfg.corpus), emb_dir,
                              shard_size=rcfg.shard_size, total=len(store))
        print(f"embeddings: encoded shards {stats['encoded']}, reused {stats['skipped']}")
        if jax.process_index() != 0:
            return  # process 0 builds the index once every process has encoded its shards
        vectors = load_embeddings(emb_dir)
        index = (ExactIndex(vectors) if dense[0] == "exact" else ScannIndex.build(
            vectors, params={"rescore": rcfg.get("scann_rescore", "auto")}))
        index.save(os.path.join(out_dir, "dense"))
        with open(os.path.join(out_dir, "retrieval.json"), "w") as f:
            json.dump({"encoder": rcfg.encoder, "query_prefix": encoder.prefix["query"],
                       "passage_prefix": encoder.prefix["passage"],
                       "query_max_length": encoder.max_length["query"],
                       "passage_max_length": encoder.max_length["passage"],
                       "corpus": rcfg.corpus, "index": dense[0]}, f, indent=1)
        print(f"{dense[0]} index over {len(vectors)} vectors -> {out_dir}/dense")


def main(argv):
    del argv
    from searchr1_jax.parallel import initialize_distributed
    initialize_distributed()
    rcfg = _CONFIG.value.retrieval
    out_dir = _OUT.value or rcfg.index_dir
    if not out_dir:
        raise app.UsageError("give --out_dir or --config.retrieval.index_dir")
    build(rcfg, out_dir, _KINDS.value or [rcfg.kind])


if __name__ == "__main__":
    app.run(main)
