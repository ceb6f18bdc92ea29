"""Jitted sampler: bucketed prefill, ``lax.while_loop`` decode, exact stop strings on token ids."""
from searchr1_jax.sampling.filters import (first_argmax, greedy_tokens, sample_tokens, top_k_mask,
                                         top_p_mask)
from searchr1_jax.sampling.sampler import (STOP_BUDGET, STOP_EOS, STOP_SEQUENCE, SampleOutput,
                                           attention_window, bucket_length, generate, left_pad,
                                           prefill)
from searchr1_jax.sampling.stop import StopTable, token_byte_strings
