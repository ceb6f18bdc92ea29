"""Downloads of the paper's QA data from the Hugging Face hub (the real path; offline here).

- FlashRAG (``RUC-NLPIR/FlashRAG_datasets``): ``{name}/{split}.jsonl`` with ``question`` and
  ``golden_answers`` (what Search-R1's ``scripts/data_process/*.py`` read).
- Search-R1's processed training mix (``PeterJinGo/nq_hotpotqa_train``): ``{split}.parquet``.
"""
from __future__ import annotations

FLASHRAG_REPO = "RUC-NLPIR/FlashRAG_datasets"
SEARCHR1_TRAIN_REPO = "PeterJinGo/nq_hotpotqa_train"


class HubUnavailableError(RuntimeError):
    """The hub could not deliver a file (offline, unreachable, or the file is missing)."""


def hub_filename(name: str, split: str, kind: str) -> tuple[str, str]:
    """``(repo_id, filename)`` of one split on the hub."""
    if kind == "flashrag":
        return FLASHRAG_REPO, f"{name}/{split}.jsonl"
    if kind == "searchr1":
        return SEARCHR1_TRAIN_REPO, f"{split}.parquet"
    raise ValueError(f"hub kind {kind!r}: must be 'flashrag' or 'searchr1'")


def download_splits(name: str, splits: tuple[str, ...], kind: str) -> dict[str, str]:
    """Local paths of ``splits`` of dataset ``name`` fetched with ``huggingface_hub``.

    Raises ``HubUnavailableError`` naming the repo/file and the manual-dir alternative.
    """
    from huggingface_hub import hf_hub_download  # lazy: network path only

    out = {}
    for split in splits:
        repo, filename = hub_filename(name, split, kind)
        try:
            out[split] = hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset")
        except Exception as e:  # offline mode, DNS, HTTP errors: all mean "not available"
            raise HubUnavailableError(
                f"could not download {repo}/{filename} from the Hugging Face hub "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                f"Put the file at <manual_dir>/{name}/{split}"
                f"{'.parquet' if kind == 'searchr1' else '.jsonl'} and pass manual_dir "
                "(data.manual_dir in the config), or use the embedded 'mini' suite.") from e
    return out
