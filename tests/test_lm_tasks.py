"""The task registry (every task of the spec once, lookups by name or alias, users of the registry) and the
sequence builders (golden layouts, lengths, loss masks, decoding, refusals)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from videopoet.eval.generation import LONG
from videopoet.eval.generation import TASKS as SCORED
from videopoet.lm.records import TokenRecord
from videopoet.lm.tasks import (
    CONDITION_KINDS,
    MODALITIES,
    TASKS,
    TRAINED_TASKS,
    TaskSpec,
    build_example,
    decode_output,
    sequence_length,
    task,
)
from videopoet.lm.vocab import SPECIAL_TOKENS, VOCABS, Vocab
from videopoet.tokenizers import conditioning as C


def test_registry_covers_the_spec_and_the_command_line():
    assert set(TASKS) == {
        "unconditional",
        "text_to_video",
        "text_to_image",
        "frame_prediction",
        "image_to_video",
        "inpainting",
        "outpainting_central",
        "outpainting_horizontal",
        "outpainting_vertical",
        "stylization",
        "audio_to_video",
        "video_to_audio",
        "av_continuation",
        "text_to_audio",
        "editing",
    }
    cli = ("t2v", "t2i", "i2v", "continue", "inpaint", "outpaint", "stylize", "v2a", "a2v", "t2a")
    assert all(task(alias).alias == alias for alias in cli)  # design.md's `videopoet generate --task`
    for spec in TASKS.values():
        assert task(spec.name) is spec and task(spec.alias) is spec
        assert set(spec.inputs + spec.outputs) <= set(MODALITIES) and spec.outputs
        assert all(step in TASKS and not TASKS[step].composed_of for step in spec.composed_of)
    assert TASKS["text_to_audio"].composed_of == ("text_to_video", "video_to_audio")


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown task 'x2y'.*image_to_video \(i2v\)"):
        task("x2y")
    with pytest.raises(ValueError, match="unknown modalities"):
        TaskSpec(name="t", alias="t", description="", inputs=("smell",), outputs=("video",))


def test_users_of_the_registry():
    # every scored entry is a registry alias, except the long-video entry (text_to_video at 10 s)
    assert all(task(alias).alias == alias for alias in SCORED if alias != LONG)
    assert LONG in SCORED and LONG not in TASKS
    v = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    by_alias = C.commit_condition(v, "outpaint")
    assert torch.equal(by_alias.video, C.commit_condition(v, "outpainting_central").video)
    assert set(C.COMMIT_PADDINGS) <= set(TASKS)
    with pytest.raises(ValueError, match="unknown COMMIT task 't2v'"):
        C.commit_condition(v, "t2v")


# ============================================================================================ builders
VOCAB = VOCABS["debug"]
GRID, AUDIO_FRAMES, LEVELS, TEXT_SLOTS, TEXT_DIM = (2, 2, 2), 3, 2, 4, 4
KINDS = CONDITION_KINDS


def tiny_record(**changes) -> TokenRecord:
    """Grid (2, 2, 2) holding v0…v7; conditions v10…, v20…, v30…, v40…, flow/depth v50…; audio level 0
    codes 1 2 3, level 1 codes 4 5 6; a 3-token caption whose last token is padding; portrait, 5 frames."""
    video = np.arange(8, dtype=np.int32).reshape(GRID)
    record = TokenRecord(
        key="clip0",
        caption="a red ball",
        video=video,
        audio=np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32),
        text=np.arange(12, dtype=np.float16).reshape(3, TEXT_DIM) + 1,
        text_mask=np.array([True, True, False]),
        conditions={kind: video + 10 * (i + 1) for i, kind in enumerate(KINDS)},
        width=128,
        height=224,
        frames=5,
    )
    return replace(record, **changes)


def build(name, record=None, *, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    return build_example(name, record or tiny_record(), VOCAB, text_slots=TEXT_SLOTS, text_dim=TEXT_DIM,
                         rng=rng, **kwargs)  # fmt: skip


# The layouts, literally: "|" marks prefix_len (the prefix is everything before it). The header states the
# nearest paper shape (128 wide × 224 tall; 5 frames → <dur:17>); text_to_image has no <dur>, no <eov_o>,
# no <eos>; frame_prediction's t = 2 forces k = 1 given frame, then that frame repeated.
GOLDEN = {
    "unconditional": "<bos> <task:video> <res:128x224> <dur:17> "
    "| <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "text_to_video": "<bos> <task:video> <res:128x224> <dur:17> <bot_i> <text> <text> <text> <text> <eot_i> "
    "| <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "text_to_image": "<bos> <task:image> <res:128x224> <bot_i> <text> <text> <text> <text> <eot_i> "
    "| <bov_o> v0 v1 v2 v3",
    "frame_prediction": "<bos> <task:continuation> <res:128x224> <dur:17> "
    "<bov_i> v0 v1 v2 v3 v0 v1 v2 v3 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "image_to_video": "<bos> <task:video> <res:128x224> <dur:17> "
    "<bov_i> v0 v1 v2 v3 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "inpainting": "<bos> <task:painting> <res:128x224> <dur:17> "
    "<bov_i> v10 v11 v12 v13 v14 v15 v16 v17 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "outpainting_central": "<bos> <task:painting> <res:128x224> <dur:17> "
    "<bov_i> v20 v21 v22 v23 v24 v25 v26 v27 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "outpainting_horizontal": "<bos> <task:painting> <res:128x224> <dur:17> "
    "<bov_i> v30 v31 v32 v33 v34 v35 v36 v37 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "outpainting_vertical": "<bos> <task:painting> <res:128x224> <dur:17> "
    "<bov_i> v40 v41 v42 v43 v44 v45 v46 v47 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "stylization": "<bos> <task:stylization> <res:128x224> <dur:17> "
    "<bot_i> <text> <text> <text> <text> <eot_i> <bov_i> v50 v51 v52 v53 v54 v55 v56 v57 <eov_i> "
    "| <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "stylization+first_frame": "<bos> <task:stylization> <res:128x224> <dur:17> "
    "<bot_i> <text> <text> <text> <text> <eot_i> <bov_i> v50 v51 v52 v53 v54 v55 v56 v57 <eov_i> "
    "<bov_i> v0 v1 v2 v3 <eov_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "audio_to_video": "<bos> <task:video> <res:128x224> <dur:17> "
    "<boa_i> a0:1 a0:2 a0:3 a1:4 a1:5 a1:6 <eoa_i> | <bov_o> v0 v1 v2 v3 v4 v5 v6 v7 <eov_o> <eos>",
    "video_to_audio": "<bos> <task:audio> <res:128x224> <dur:17> "
    "<bov_i> v0 v1 v2 v3 v4 v5 v6 v7 <eov_i> | <boa_o> a0:1 a0:2 a0:3 a1:4 a1:5 a1:6 <eoa_o> <eos>",
    # the audio of pixel frame 0: ceil(3 audio frames / 5 pixel frames) = 1 audio frame per level
    "av_continuation": "<bos> <task:av_continuation> <res:128x224> <dur:17> "
    "<bov_i> v0 v1 v2 v3 <eov_i> <boa_i> a0:1 a1:4 <eoa_i> "
    "| <bov_o> v4 v5 v6 v7 <eov_o> <boa_o> a0:2 a0:3 a1:5 a1:6 <eoa_o> <eos>",
}


def golden_example(key: str):
    name, _, variant = key.partition("+")
    return build(name, first_frame=variant == "first_frame" if name == "stylization" else None)


@pytest.mark.parametrize("key", list(GOLDEN))
def test_golden_layout(key):
    ex = golden_example(key)
    words = GOLDEN[key].split()
    assert [VOCAB.token_name(int(i)) for i in ex.ids] == [w for w in words if w != "|"]
    assert ex.prefix_len == words.index("|")
    assert ex.task == key.partition("+")[0]


def test_every_trained_task_has_a_builder_and_a_golden_layout():
    assert set(TRAINED_TASKS) == {name for name, spec in TASKS.items() if not spec.composed_of}
    assert {k.partition("+")[0] for k in GOLDEN} == set(TRAINED_TASKS)
    with pytest.raises(ValueError, match="no sequence builder for task 'text_to_audio'"):
        build("text_to_audio")


@pytest.mark.parametrize("key", list(GOLDEN))
def test_example_contract(key):
    """Length = sequence_length; targets = exactly the outputs; text slots in the prefix; dtypes."""
    ex = golden_example(key)
    length = sequence_length(ex.task, VOCAB, grid=GRID, audio_frames=AUDIO_FRAMES, audio_levels=LEVELS,
                             text_slots=TEXT_SLOTS, first_frame=key.endswith("first_frame"))  # fmt: skip
    assert ex.ids.dtype == torch.long and ex.ids.shape == (length,)
    assert ex.loss_mask.dtype == torch.bool and ex.loss_mask.shape == (length,)
    assert torch.equal(ex.loss_mask, torch.arange(length) >= ex.prefix_len)
    assert int(ex.ids[ex.prefix_len]) in (Vocab.bov_o, Vocab.boa_o)  # the first output token
    slots = (ex.ids == Vocab.text_slot).nonzero().flatten()
    assert len(slots) in (0, TEXT_SLOTS) and bool((slots < ex.prefix_len).all())
    assert ex.text.dtype == torch.float32 and ex.text.shape == (TEXT_SLOTS, TEXT_DIM)
    assert ex.text_mask.dtype == torch.bool and ex.text_mask.shape == (TEXT_SLOTS,)
    if len(slots):  # the caption's 2 real tokens, then masked (zero) slots
        assert ex.text_mask.tolist() == [True, True, False, False]
        assert torch.equal(ex.text[:2], torch.arange(8.0).reshape(2, 4) + 1) and not ex.text[2:].any()
    else:
        assert not ex.text_mask.any() and not ex.text.any()


@pytest.mark.parametrize("key", list(GOLDEN))
def test_decode_output_inverts_the_output_segment(key):
    ex, record = golden_example(key), tiny_record()
    expected = {  # (video, audio) the output segment holds
        "text_to_image": (record.video[:1], None),
        "video_to_audio": (None, record.audio),
        "av_continuation": (record.video[1:], record.audio[:, 1:]),
    }.get(ex.task, (record.video, None))
    for ids in (ex.ids, ex.ids[ex.prefix_len :]):  # a whole example or its outputs alone
        got = decode_output(ex.task, ids, VOCAB, GRID, AUDIO_FRAMES, LEVELS)
        for value, want in zip(got, expected):
            assert (value is None) == (want is None)
            if want is not None:
                assert value.dtype == torch.long and np.array_equal(value.numpy(), want)
    broken = ex.ids.clone()
    broken[ex.prefix_len] = Vocab.eos
    with pytest.raises(ValueError, match="markers"):
        decode_output(ex.task, broken, VOCAB, GRID, AUDIO_FRAMES, LEVELS)


def test_tiny_preset_lengths_and_blocks():
    """The bundled shape (grid (5, 16, 16), 4 × 106 audio, 32 text slots), random codes: the lengths the
    report quotes, every id in [0, V), exactly as many visual / per-level audio ids as the layout holds."""
    vocab, rng = VOCABS["tiny"], np.random.default_rng(1)
    grid = (5, 16, 16)
    video = rng.integers(0, vocab.visual_codebook_size, grid, dtype=np.int32)
    record = tiny_record(
        video=video,
        audio=rng.integers(0, vocab.audio_codebook_size, (4, 106), dtype=np.int32),
        text=rng.standard_normal((40, 8)).astype(np.float16),
        text_mask=np.ones(40, dtype=bool),
        conditions={k: rng.integers(0, vocab.visual_codebook_size, grid, dtype=np.int32) for k in KINDS},
        width=128,
        height=128,
        frames=17,
    )
    lengths = {"unconditional": 1287, "text_to_video": 1321, "text_to_image": 294, "frame_prediction": 2569,
               "image_to_video": 1545, "inpainting": 2569, "outpainting_central": 2569,
               "outpainting_horizontal": 2569, "outpainting_vertical": 2569, "stylization": 2603,
               "audio_to_video": 1713, "video_to_audio": 1713, "av_continuation": 1717}  # fmt: skip
    # (visual tokens, audio tokens per level) of each layout
    counts = {"text_to_image": (256, 0), "image_to_video": (1536, 0), "stylization": (2560, 0),
              "audio_to_video": (1280, 106), "video_to_audio": (1280, 106), "av_continuation": (1280, 106),
              "unconditional": (1280, 0), "text_to_video": (1280, 0)}  # fmt: skip
    kw = dict(grid=grid, audio_frames=106, audio_levels=4, text_slots=32)
    for name in TRAINED_TASKS:
        ex = build_example(name, record, vocab, text_slots=32, text_dim=8, rng=rng, first_frame=False)
        assert len(ex.ids) == lengths[name] == sequence_length(name, vocab, **kw)
        assert int(ex.ids.min()) >= 0 and int(ex.ids.max()) < vocab.size
        blocks = [vocab.block_of(int(i)) for i in ex.ids]
        n_visual, n_audio = counts.get(name, (2560, 0))
        assert sum(b.kind == "visual" for b in blocks) == n_visual
        assert all(sum(b.level == k for b in blocks) == n_audio for k in range(4))
        assert all(int(i) < len(SPECIAL_TOKENS) for i, b in zip(ex.ids, blocks) if b.kind == "special")
        if name in ("text_to_video", "stylization"):
            assert ex.text_mask.all() and torch.equal(ex.text, torch.from_numpy(record.text[:32]).float())
    styl = sequence_length("stylization", vocab, **kw, first_frame=True)
    assert styl == 2861 == len(build_example("stylization", record, vocab, text_slots=32, text_dim=8,
                                             rng=rng, first_frame=True).ids)  # fmt: skip


def test_drop_text_masks_every_slot():
    for name in ("text_to_video", "text_to_image", "stylization"):
        kept, dropped = build(name), build(name, drop_text=True)
        assert torch.equal(kept.ids, dropped.ids) and kept.prefix_len == dropped.prefix_len
        assert kept.text_mask.any() and not dropped.text_mask.any() and not dropped.text.any()


def test_frame_prediction_draws_the_given_frames_at_a_fixed_length():
    """Latent frames 0…4 hold codes 0…4: the input is frames [0, k) then frame k − 1, k ∈ [1, 4]."""
    record = tiny_record(video=np.arange(5, dtype=np.int32).reshape(5, 1, 1))
    inputs = set()
    for seed in range(40):
        ex = build("frame_prediction", record, seed=seed)
        assert len(ex.ids) == 4 + 7 + 8 and ex.prefix_len == 4 + 7
        given = tuple(VOCAB.lm_to_visual(ex.ids[5:10]).tolist())
        k = given.index(given[-1]) + 1
        assert given == (*range(k), *[k - 1] * (5 - k))
        inputs.add(given)
        assert torch.equal(ex.ids, build("frame_prediction", record, seed=seed).ids)  # rng-determined
    assert len(inputs) == 4


def test_stylization_draws_its_first_frame_variant():
    kw = dict(grid=GRID, audio_frames=AUDIO_FRAMES, audio_levels=LEVELS, text_slots=TEXT_SLOTS)
    short, long = (sequence_length("stylization", VOCAB, **kw, first_frame=f) for f in (False, True))
    assert long == short + 4 + 2
    seen = [len(build("stylization", seed=seed).ids) for seed in range(40)]
    assert set(seen) == {short, long}
    assert len(build("stylization", seed=0, first_frame=True).ids) == long
    with pytest.raises(ValueError, match="stylization variant"):
        build("text_to_video", first_frame=True)


def test_text_longer_than_the_slots_is_truncated():
    record = tiny_record(text=np.ones((6, TEXT_DIM), np.float16), text_mask=None)
    ex = build("text_to_video", record)
    assert ex.text_mask.all() and ex.text.shape == (TEXT_SLOTS, TEXT_DIM)
    assert int((ex.ids == Vocab.text_slot).sum()) == TEXT_SLOTS


@pytest.mark.parametrize(
    "name,changes,match",
    [
        ("audio_to_video", {"audio": None}, "needs audio codes"),
        ("video_to_audio", {"audio": None}, "needs audio codes"),
        ("av_continuation", {"audio": None}, "needs audio codes"),
        ("inpainting", {"conditions": {}}, "needs the 'inpainting' condition"),
        ("outpainting_vertical", {"conditions": {}}, "needs the 'outpainting_vertical' condition"),
        ("stylization", {"conditions": {}}, "needs the 'flow_depth' condition"),
        ("text_to_video", {"text": None}, "needs text embeddings"),
        ("text_to_image", {"text": None}, "needs text embeddings"),
        ("stylization", {"text": None}, "needs text embeddings"),
        ("text_to_video", {"text": np.zeros((3, 5), np.float16)}, r"must be \(S, 4\)"),
        ("frame_prediction", {"video": np.zeros((1, 2, 2), np.int32)}, "needs ≥ 2 latent frames"),
        ("av_continuation", {"video": np.zeros((1, 2, 2), np.int32)}, "too short"),
        ("av_continuation", {"audio": np.zeros((2, 1), np.int32)}, "too short"),
        ("inpainting", {"conditions": {"inpainting": np.zeros((2, 2, 3), np.int32)}}, "≠ video grid"),
        ("unconditional", {"video": np.zeros((2, 2, 2), np.float32)}, "integer array"),
        ("unconditional", {"video": np.full((2, 2, 2), 256, np.int32)}, "out of range"),
        ("video_to_audio", {"audio": np.full((2, 3), 64, np.int32)}, "out of range"),
    ],
)
def test_missing_or_malformed_inputs_are_refused(name, changes, match):
    with pytest.raises(ValueError, match=match):
        build(name, tiny_record(**changes))
    with pytest.raises(ValueError, match=match):  # also when the text is dropped
        build(name, tiny_record(**changes), drop_text=True)


def test_the_debug_model_accepts_every_example():
    """The examples fit PrefixLM's contract; a task without text is run with text=None (its ids hold no
    <text> slot, and the model refuses text without slots)."""
    from videopoet.lm.transformer import PrefixLM

    model = PrefixLM.from_preset("debug").eval()
    dim = model.config.text_dim
    record = tiny_record(text=np.ones((3, dim), np.float16))
    for name in TRAINED_TASKS:
        ex = build_example(name, record, VOCAB, text_slots=TEXT_SLOTS, text_dim=dim,
                           rng=np.random.default_rng(0))  # fmt: skip
        text = (ex.text[None], ex.text_mask[None]) if "text" in task(name).inputs else (None, None)
        with torch.no_grad():
            logits = model(ex.ids[None], torch.tensor([ex.prefix_len]), *text)
        assert logits.shape == (1, len(ex.ids), VOCAB.size) and torch.isfinite(logits).all()


def test_condition_kinds_agree_with_the_records():
    from videopoet.lm import records

    assert records.CONDITION_KINDS == CONDITION_KINDS
