"""HTML loss-mask view: runs of equal mask decoded whole, escaped, coloured by mask value."""
import numpy as np

from searchr1_jax.rollout import RolloutBatch
from searchr1_jax.rollout.mask_view import (GENERATED_STYLE, OBSERVATION_STYLE, loss_mask_html,
                                            mask_runs)
from tests.rollout.fakes import FakeTokenizer


def test_runs_and_html_by_hand():
    tok = FakeTokenizer()
    gen1, obs, gen2 = tok.encode("<search> a&b </search>"), tok.encode("<information>x<y"), \
        tok.encode("<answer> é </answer>")
    resp = gen1 + obs + gen2 + [0, 0]
    loss = [1] * len(gen1) + [0] * len(obs) + [1] * len(gen2) + [0, 0]
    real = [1] * (len(resp) - 2) + [0, 0]
    assert mask_runs(resp, loss, real) == [(1, gen1), (0, obs), (1, gen2)]
    prompt = tok.encode("Q?")
    batch = RolloutBatch(prompt_tokens=np.array([prompt]), prompt_mask=np.ones((1, 2), bool),
                         response_tokens=np.array([resp]), response_mask=np.array([real], float),
                         loss_mask=np.array([loss], float),
                         sample_logprobs=np.zeros((1, len(resp))), group_ids=np.zeros(1))
    html = loss_mask_html(batch, tok, prompt=True)
    body = html[html.index("<pre"):]
    assert body == (
        '<pre style="white-space:pre-wrap;font-size:12px"><span style="color:#888">Q?</span>'
        f'<span style="{GENERATED_STYLE}" title="loss_mask=1">&lt;search&gt; a&amp;b '
        '&lt;/search&gt;</span>'
        f'<span style="{OBSERVATION_STYLE}" title="loss_mask=0">&lt;information&gt;x&lt;y</span>'
        f'<span style="{GENERATED_STYLE}" title="loss_mask=1">&lt;answer&gt; é '
        '&lt;/answer&gt;</span></pre>')
