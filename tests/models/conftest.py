"""Fixtures shared by the model tests: transformers' own load of the shipped SmolLM2 GGUF (the
independent reference), loaded once per session: it takes 35-55 s on the 2-core box, and both
test_gguf_io (tensors, config) and test_loader (logits, greedy) compare against it."""
import os

import pytest

from tests.models.test_gguf_io import GGUF_NAME, smollm2_gguf_path


@pytest.fixture(scope="session")
def hf_smollm2():
    """transformers' ``AutoModelForCausalLM`` of the SmolLM2 GGUF, fp32, eval mode. Shared:
    tests only read it."""
    import torch
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_path()
    return AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=GGUF_NAME,
                                                dtype=torch.float32).eval()
