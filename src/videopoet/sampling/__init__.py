"""Sampling from the prefix LM: ``probs`` (pure functions from logits to tokens) and ``autoregressive``
(prefill / decode_one_token / decode_n_tokens / generate on the static KV cache)."""

from videopoet.sampling.autoregressive import (
    decode_n_tokens,
    decode_one_token,
    generate,
    output_plan,
    prefill,
)
from videopoet.sampling.probs import (
    cfg_logits,
    constrain,
    guidance_schedule,
    logits_to_probs,
    sample,
)

__all__ = [
    "cfg_logits",
    "constrain",
    "decode_n_tokens",
    "decode_one_token",
    "generate",
    "guidance_schedule",
    "logits_to_probs",
    "output_plan",
    "prefill",
    "sample",
]
