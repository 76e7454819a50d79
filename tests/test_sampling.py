"""The sampler (sampling/): pure probability functions, and generation on the KV cache of a random debug
PrefixLM against uncached forwards, the task layouts and decode_output."""

import math

import numpy as np
import pytest
import torch

from videopoet.lm.records import TokenRecord
from videopoet.lm.tasks import build_example, decode_output, sequence_length
from videopoet.lm.transformer import PrefixLM, PrefixLMConfig
from videopoet.lm.vocab import VOCABS
from videopoet.sampling import autoregressive as ar
from videopoet.sampling import (
    cfg_logits,
    constrain,
    generate,
    guidance_schedule,
    logits_to_probs,
    output_plan,
    sample,
)
from videopoet.sampling.probs import exponential_noise

pytestmark = pytest.mark.usefixtures("one_thread")  # debug models: one thread, fast on a busy machine
VOCAB = VOCABS["debug"]
GRID, AUDIO_FRAMES, LEVELS, SLOTS, TEXT_DIM = (2, 2, 3), 3, 2, 4, 384


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PrefixLM.from_preset("debug").eval()


def example(task, seed=0):
    rng = np.random.default_rng(seed)
    record = TokenRecord(
        key="clip",
        caption="a red ball",
        video=rng.integers(0, VOCAB.visual_codebook_size, GRID).astype(np.int32),
        audio=rng.integers(0, VOCAB.audio_codebook_size, (LEVELS, AUDIO_FRAMES)).astype(np.int32),
        text=rng.standard_normal((3, TEXT_DIM)).astype(np.float16),
        text_mask=np.array([True, True, False]),
        conditions={},
        width=128,
        height=128,
        frames=5,
    )
    ex = build_example(task, record, VOCAB, text_slots=SLOTS, text_dim=TEXT_DIM, rng=rng)
    text = (ex.text, ex.text_mask) if task == "text_to_video" else (None, None)
    return ex, text


def plan_of(task):
    return output_plan(task, VOCAB, GRID, AUDIO_FRAMES, LEVELS)


def uncached_greedy(model, ex, text, plan, scale=None):
    """Argmax over repeated full forwards on the growing sequence (no cache), guided when scale is set."""
    seq, p = ex.ids[: ex.prefix_len], ex.prefix_len
    batched = [None if t is None else t[None] for t in text]
    for entry in plan:
        logits = model(seq[None], torch.tensor([p]), *batched)[0, -1]
        if scale is not None:
            masked = torch.zeros_like(text[1])[None]
            uncond = model(seq[None], torch.tensor([p]), text[0][None], masked)[0, -1]
            logits = cfg_logits(logits, uncond, scale)
        allowed = entry if isinstance(entry, range) else range(entry, entry + 1)
        seq = torch.cat([seq, constrain(logits, allowed).argmax()[None]])
    return seq[p:]


# ------------------------------------------------------------------------------------------ probs
def test_temperature_top_k_top_p_keep_exactly_the_documented_ids():
    p = torch.tensor([0.15, 0.5, 0.05, 0.3])  # ranked: id 1, 3, 0, 2
    logits = p.log()
    torch.testing.assert_close(logits_to_probs(logits), p)
    torch.testing.assert_close(logits_to_probs(logits, temperature=2.0), p.sqrt() / p.sqrt().sum())
    # top-p keeps a token while the mass ranked strictly before it is < top_p
    torch.testing.assert_close(logits_to_probs(logits, top_p=0.75), torch.tensor([0, 0.625, 0, 0.375]))
    kept = logits_to_probs(logits, top_p=0.85)
    assert kept.nonzero().flatten().tolist() == [0, 1, 3]
    torch.testing.assert_close(kept, torch.tensor([0.15, 0.5, 0, 0.3]) / 0.95)
    torch.testing.assert_close(logits_to_probs(logits, top_k=2), torch.tensor([0, 0.625, 0, 0.375]))
    assert logits_to_probs(logits, top_p=0.01).tolist() == [0, 1, 0, 0]
    assert sample(logits[None].expand(3, 4), temperature=0).tolist() == [1, 1, 1]
    gen = torch.Generator().manual_seed(0)
    draws = sample(logits.expand(4000, 4), top_k=2, generator=gen)
    assert set(draws.tolist()) == {1, 3} and abs((draws == 1).float().mean() - 0.625) < 0.03


def test_cfg_schedule_and_constrain():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert torch.equal(cfg_logits(cond, uncond, 1.0), cond)
    assert cfg_logits(cond, uncond, 3.0).tolist() == [2.0, 0.0]
    assert guidance_schedule(0, 5, 4.0) == guidance_schedule(4, 5, 4.0) == 4.0
    assert [guidance_schedule(i, 5, 3.0, "linear") for i in range(5)] == [1.0, 1.5, 2.0, 2.5, 3.0]
    cosine = [guidance_schedule(i, 3, 3.0, "cosine") for i in range(3)]
    assert cosine[0] == 1.0 and math.isclose(cosine[1], 2.0) and math.isclose(cosine[2], 3.0)
    out = constrain(torch.zeros(2, 6), range(2, 4))
    assert torch.isfinite(out).tolist() == [[False, False, True, True, False, False]] * 2
    with pytest.raises(ValueError):
        guidance_schedule(0, 5, 2.0, "exponential")


# ------------------------------------------------------------------------------------------ generation
def test_output_plan_follows_the_task_layout():
    for task in ("text_to_video", "video_to_audio", "text_to_image", "av_continuation"):
        ex, _ = example(task)
        plan = plan_of(task)
        total = sequence_length(
            task, VOCAB, grid=GRID, audio_frames=AUDIO_FRAMES, audio_levels=LEVELS, text_slots=SLOTS
        )
        assert len(plan) == total - ex.prefix_len == len(ex.ids) - ex.prefix_len
        for entry, token in zip(plan, ex.ids[ex.prefix_len :].tolist()):
            assert token in entry if isinstance(entry, range) else token == entry
    v2a = plan_of("video_to_audio")
    assert v2a[0] == VOCAB.boa_o and v2a[1:4] == [VOCAB.audio_range(0)] * 3
    assert v2a[4:7] == [VOCAB.audio_range(1)] * 3 and v2a[7:] == [VOCAB.eoa_o, VOCAB.eos]


def test_cached_greedy_equals_uncached_argmax(model):
    ex, text = example("text_to_video")
    plan = plan_of("text_to_video")
    out = generate(model, ex.ids, ex.prefix_len, *text, plan=plan, temperature=0)
    assert torch.equal(out, uncached_greedy(model, ex, text, plan))
    guided = generate(model, ex.ids, ex.prefix_len, *text, plan=plan, temperature=0, guidance_scale=3.0)
    assert torch.equal(guided, uncached_greedy(model, ex, text, plan, scale=3.0))
    free = [VOCAB.visual_range] * 8  # many free choices: the cache must hold over every step
    assert torch.equal(
        generate(model, ex.ids, ex.prefix_len, *text, plan=free, temperature=0),
        uncached_greedy(model, ex, text, free),
    )


def test_guidance_at_scale_one_equals_unguided(model):
    ex, text = example("text_to_video")
    kw = dict(plan=[VOCAB.visual_range] * 10, temperature=1.0, seed=3)
    plain = generate(model, ex.ids, ex.prefix_len, *text, **kw)
    negative = (torch.randn(SLOTS, TEXT_DIM), None)  # the guided batch path, with a negative prompt
    assert torch.equal(generate(model, ex.ids, ex.prefix_len, *text, negative=negative, **kw), plain)
    ramp = generate(model, ex.ids, ex.prefix_len, *text, guidance_schedule_kind="linear", **kw)
    assert torch.equal(ramp, plain)  # a linear ramp to 1 is 1 throughout: the masked-text batch path
    # random weights give near-uniform probabilities, where the noise decides: guidance shows in argmax
    greedy = {**kw, "temperature": 0}
    guided = generate(model, ex.ids, ex.prefix_len, *text, guidance_scale=8.0, **greedy)
    assert not torch.equal(guided, generate(model, ex.ids, ex.prefix_len, *text, **greedy))


def test_top_k_one_is_greedy_and_seeds_decide(model):
    ex, text = example("text_to_video")
    kw = dict(plan=[VOCAB.visual_range] * 10)
    greedy = generate(model, ex.ids, ex.prefix_len, *text, temperature=0, **kw)
    assert torch.equal(generate(model, ex.ids, ex.prefix_len, *text, top_k=1, seed=5, **kw), greedy)
    a = generate(model, ex.ids, ex.prefix_len, *text, seed=1, **kw)
    assert torch.equal(a, generate(model, ex.ids, ex.prefix_len, *text, seed=1, **kw))
    assert not torch.equal(a, generate(model, ex.ids, ex.prefix_len, *text, seed=2, **kw))


def test_batched_rows_match_single_rows(model):
    (ex0, text0), (ex1, text1) = example("text_to_video", 0), example("text_to_video", 1)
    plan, p = plan_of("text_to_video"), ex0.prefix_len
    ids, text = torch.stack([ex0.ids, ex1.ids]), torch.stack([text0[0], text1[0]])
    both = generate(model, ids, p, text, torch.stack([text0[1], text1[1]]), plan=plan, temperature=0)
    assert torch.equal(both[0], generate(model, ex0.ids, p, *text0, plan=plan, temperature=0))
    assert torch.equal(both[1], generate(model, ex1.ids, p, *text1, plan=plan, temperature=0))


@pytest.mark.parametrize("task", ["text_to_video", "video_to_audio"])
def test_constrained_sampling_decodes_to_a_clip(model, task):
    ex, text = example(task)
    plan = plan_of(task)
    for seed in range(3):
        out = generate(model, ex.ids, ex.prefix_len, *text, plan=plan, temperature=1.5, seed=seed)
        for entry, token in zip(plan, out.tolist()):
            assert token in entry if isinstance(entry, range) else token == entry
        video, audio = decode_output(task, out, VOCAB, GRID, AUDIO_FRAMES, LEVELS)
        if task == "text_to_video":
            assert audio is None and video.shape == GRID
            assert video.min() >= 0 and video.max() < VOCAB.visual_codebook_size
        else:
            assert video is None and audio.shape == (LEVELS, AUDIO_FRAMES)
            assert audio.min() >= 0 and audio.max() < VOCAB.audio_codebook_size


def test_block_logits_equal_the_full_heads_block():
    torch.manual_seed(0)
    flat = PrefixLM.from_preset("debug").eval()
    tied = PrefixLM.from_preset("debug", tie_embeddings=True).eval()
    factorized = PrefixLM(
        PrefixLMConfig(vocab_size=VOCAB.size, dim=32, n_layers=1, n_heads=2, factorized_visual=(256, 256))
    ).eval()
    for m in (flat, tied, factorized):
        h = torch.randn(3, m.config.dim)
        for block in (VOCAB.visual_range, VOCAB.audio_range(1), range(VOCAB.eos, VOCAB.eos + 1)):
            full = m.output(h)[:, block.start : block.stop]
            torch.testing.assert_close(ar.block_logits(m, h, block.start, block.stop), full)


def decode_both_ways(model, ids, text, mask, plan, guided):
    """The plan after its first (forced) id, decoded greedily by the block path and the full-head step."""
    p, rows = ids.shape[1], ids.shape[0]
    allowed = ar.plan_bounds(plan[1:], VOCAB.size, "cpu")
    scales = torch.full((len(plan) - 1,), 3.0 if guided else 1.0)
    plen, first = torch.full((rows,), p), torch.full((rows, 1), plan[0])
    kw = dict(guided=guided, temperature=0, top_k=None, top_p=None)
    outs = []
    for step in (None, ar.decode_one_token):
        ar._setup_caches(model, rows, p + len(plan))
        ar.prefill(model, ids, plen, text, mask)
        outs.append(ar.decode_n_tokens(model, first, p, allowed, scales, None, step=step, **kw))
    return outs


def test_block_path_equals_the_full_head_step(model):
    """generate's eager block path and the full-head step (the compiled path's code, run eagerly) pick
    the same greedy tokens: with masked text keys, guided, and on an audio plan without text."""
    ex, (text, mask) = example("text_to_video")
    ids, text, mask = ex.ids[None, : ex.prefix_len], text[None], mask[None]
    assert torch.equal(*decode_both_ways(model, ids, text, mask, plan_of("text_to_video"), False))
    guided_rows = ar._guidance_rows(ids, text, mask, None)
    assert torch.equal(*decode_both_ways(model, *guided_rows, plan_of("text_to_video"), True))
    ex, text = example("video_to_audio")
    plan = plan_of("video_to_audio")
    assert torch.equal(*decode_both_ways(model, ex.ids[None, : ex.prefix_len], None, None, plan, False))
    greedy = generate(model, ex.ids, ex.prefix_len, plan=plan, temperature=0)
    assert torch.equal(greedy, uncached_greedy(model, ex, text, plan))


def test_block_path_with_grouped_query_attention():
    torch.manual_seed(1)
    gqa = PrefixLM.from_preset("debug", n_kv_heads=2).eval()  # 4 query heads share 2 KV heads
    ex, (text, mask) = example("text_to_video")
    rows = ar._guidance_rows(ex.ids[None, : ex.prefix_len], text[None], mask[None], None)
    assert torch.equal(*decode_both_ways(gqa, *rows, plan_of("text_to_video"), True))


def test_cpu_noise_threads_and_plan_checks(model):
    draws = exponential_noise((4, 50_000), "cpu", torch.Generator().manual_seed(0))
    assert torch.isfinite(draws).all() and (draws > 0).all() and abs(draws.mean() - 1) < 0.01
    torch.set_num_threads(2)  # the one_thread fixture restores the caller's count afterwards
    with ar._decode_threads(model, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="no <pad>"):
        ar.plan_bounds([range(0, 10)], VOCAB.size, "cpu")


def test_step_table_rows_and_aligned_caches(model):
    allowed = torch.tensor([[5, 9], [VOCAB.eos, VOCAB.eos + 1]])
    table = ar.step_table(100, allowed, torch.tensor([3.0, 1.5]), VOCAB.size)
    assert table.dtype == torch.float32
    assert table.tolist() == [[100, 5, 9, 3.0], [101, VOCAB.eos, VOCAB.eos + 1, 1.5]]
    with pytest.raises(ValueError, match="below 2"):
        ar.step_table(2**24 - 1, allowed, torch.ones(2), VOCAB.size)
    ar._setup_caches(model, 2, 13)  # rounded up to a multiple of CACHE_MULTIPLE
    assert model.cache_key_ok.shape == (2, 16) and model.layers[0].attention.kv_cache.k_cache.shape[2] == 16


def test_guidance_needs_text(model):
    ex, _ = example("video_to_audio")
    with pytest.raises(ValueError, match="guidance needs a text"):
        generate(model, ex.ids, ex.prefix_len, plan=plan_of("video_to_audio"), guidance_scale=2.0)


def test_non_finite_guidance_or_temperature_is_refused(model):
    ex, text = example("text_to_video")
    plan = plan_of("text_to_video")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
            generate(model, ex.ids, ex.prefix_len, *text, plan=plan, guidance_scale=bad)
        with pytest.raises(ValueError, match="need temperature"):
            generate(model, ex.ids, ex.prefix_len, *text, plan=plan, temperature=abs(bad))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled decode step is a GPU path")
def test_compiled_step_on_gpu_matches_eager_and_never_syncs():
    from videopoet.sampling.autoregressive import _compiled_step, decode_n_tokens

    torch.manual_seed(0)
    gpu = PrefixLM.from_preset("debug").cuda().eval()
    ex, (text, mask) = example("text_to_video")
    args = (gpu, ex.ids.cuda(), ex.prefix_len, text.cuda(), mask.cuda())
    plan = plan_of("text_to_video") + [VOCAB.visual_range] * 6  # text_to_video's plan, then free ids
    eager = generate(*args, plan=plan, temperature=0, guidance_scale=2.0)
    for _ in range(2):  # the second call replays the captured graph on the kept caches
        assert torch.equal(generate(*args, plan=plan, temperature=0, guidance_scale=2.0, compile=True), eager)
    sampled = [generate(*args, plan=plan, seed=4, top_p=0.9, compile=True) for _ in range(2)]
    assert torch.equal(*sampled)
    # the decode loop itself (after prefill) asks the host for nothing
    token = torch.full((1, 1), VOCAB.bov_o, device="cuda")
    allowed = torch.tensor([[VOCAB.visual_range.start, VOCAB.visual_range.stop]] * 8, device="cuda")
    scales = torch.ones(8, device="cuda")
    gen = torch.Generator("cuda").manual_seed(0)
    kw = dict(step=_compiled_step(), guided=False, temperature=1.0, top_k=None, top_p=0.9)
    with torch.no_grad():
        decode_n_tokens(gpu, token, ex.prefix_len, allowed, scales, gen, **kw)  # warm-up: capture
        torch.cuda.set_sync_debug_mode("error")
        try:
            decode_n_tokens(gpu, token, ex.prefix_len, allowed, scales, gen, **kw)
        finally:
            torch.cuda.set_sync_debug_mode("default")
