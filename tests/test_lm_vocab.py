"""The LM vocabulary: blocks never overlap, sizes as documented, maps round-trip, bad ids are refused."""

import pytest
import torch

from videopoet.lm.vocab import (
    DURATIONS,
    RESOLUTIONS,
    SPECIAL_BLOCK,
    SPECIAL_TOKENS,
    TASK_OUTPUTS,
    VOCABS,
    Block,
    Vocab,
)


@pytest.mark.parametrize(
    "name,size", [("debug", 256 + 256 + 4 * 64), ("tiny", 256 + 4096 + 4096), ("paper", 256 + 2**18 + 4096)]
)
def test_sizes_as_documented(name, size):
    assert VOCABS[name].size == size


@pytest.mark.parametrize("vocab", list(VOCABS.values()), ids=list(VOCABS))
def test_blocks_partition_the_ids(vocab):
    audio = [vocab.audio_range(k) for k in range(vocab.audio_levels)]
    blocks = [vocab.special_range, vocab.visual_range, *audio]
    assert blocks[0].start == 0 and blocks[-1].stop == vocab.size
    for a, b in zip(blocks, blocks[1:]):
        assert a.stop == b.start  # contiguous, hence disjoint and covering [0, size)
    assert len(vocab.visual_range) == vocab.visual_codebook_size
    assert all(len(vocab.audio_range(k)) == vocab.audio_codebook_size for k in range(vocab.audio_levels))


def test_special_tokens_are_distinct_and_inside_the_special_block():
    v = VOCABS["tiny"]
    named = [v.pad, v.bos, v.eos, v.bot_i, v.eot_i, v.bov_i, v.eov_i, v.boa_i, v.eoa_i, v.bov_o, v.eov_o]
    named += [v.boa_o, v.eoa_o, v.source, v.text_slot]
    named += [v.task(k) for k in TASK_OUTPUTS] + [v.resolution(w, h) for w, h in RESOLUTIONS]
    named += [v.duration(f) for f in DURATIONS]
    assert len(named) == len(set(named)) == len(SPECIAL_TOKENS)
    assert max(named) < SPECIAL_BLOCK
    assert v.pad == 0  # zero-filled buffers read as padding
    assert v.token_name(v.bov_o) == "<bov_o>" and v.token_name(v.task("image")) == "<task:image>"
    assert v.token_name(v.resolution(128, 224)) == "<res:128x224>"
    assert v.token_name(200) == "<reserved:200>"


def test_block_of():
    v = VOCABS["tiny"]
    assert v.block_of(0) == Block("special") and v.block_of(255) == Block("special")
    assert v.block_of(256) == Block("visual") and v.block_of(256 + 4095) == Block("visual")
    for k in range(4):
        r = v.audio_range(k)
        assert v.block_of(r.start) == v.block_of(r.stop - 1) == Block("audio", k)
    assert v.token_name(v.visual_to_lm(7)) == "v7" and v.token_name(v.audio_to_lm(5, 2)) == "a2:5"
    for bad in (-1, v.size):
        with pytest.raises(ValueError, match="out of range"):
            v.block_of(bad)


def test_visual_maps_round_trip():
    v = VOCABS["paper"]
    idx = torch.randint(0, 2**18, (2, 5, 16, 16))
    ids = v.visual_grid_to_lm(idx)
    assert ids.shape == (2, 1280)
    assert int(ids.min()) >= v.visual_range.start and int(ids.max()) < v.visual_range.stop
    assert torch.equal(ids[:, :256].reshape(2, 16, 16), idx[:, 0] + 256)  # time-major: frame 0 first
    assert torch.equal(v.lm_to_visual_grid(ids, (5, 16, 16)), idx)
    assert v.lm_to_visual(v.visual_to_lm(2**18 - 1)) == 2**18 - 1
    assert v.visual_to_lm(0) == 256


def test_audio_maps_round_trip_level_major():
    v = VOCABS["tiny"]
    codes = torch.randint(0, 1024, (3, 4, 106))
    ids = v.audio_codes_to_lm(codes)
    assert ids.shape == (3, 424)
    for k in range(4):  # level-major: level k's 106 frames form one run in its own block
        run = ids[:, 106 * k : 106 * (k + 1)]
        assert torch.equal(run, v.audio_to_lm(codes[:, k], k))
        assert int(run.min()) >= v.audio_range(k).start and int(run.max()) < v.audio_range(k).stop
    assert torch.equal(v.lm_to_audio_codes(ids), codes)
    assert torch.equal(v.lm_to_audio_codes(ids[:, :212], levels=2), codes[:, :2])
    assert v.lm_to_audio(v.audio_to_lm(1023, 3), 3) == 1023


def test_out_of_range_and_wrong_types_raise():
    v = VOCABS["tiny"]
    with pytest.raises(ValueError, match=r"visual index 4096 is out of range.*\[0, 4096\)"):
        v.visual_to_lm(torch.tensor([0, 4096]))
    with pytest.raises(ValueError, match="visual LM id"):
        v.lm_to_visual(torch.tensor([v.bos]))
    with pytest.raises(ValueError, match="level 1"):
        v.lm_to_audio(v.audio_to_lm(3, 0), 1)  # a level-0 id read as level 1
    with pytest.raises(ValueError, match="audio level"):
        v.audio_to_lm(0, 4)
    with pytest.raises(ValueError, match="integer tensor"):
        v.visual_to_lm(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="int or an integer tensor"):
        v.visual_to_lm("3")
    with pytest.raises(ValueError, match="1 ≤ K ≤ 4"):
        v.audio_codes_to_lm(torch.zeros(1, 5, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="levels must be"):
        v.lm_to_audio_codes(v.audio_codes_to_lm(torch.zeros(1, 4, 3, dtype=torch.long)), levels=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4·N\)"):
        v.lm_to_audio_codes(torch.full((1, 5), v.audio_range(0).start))
    with pytest.raises(ValueError, match="unknown task output"):
        v.task("t2v")
    with pytest.raises(ValueError, match="128x128"):
        v.resolution(256, 256)
    with pytest.raises(ValueError, match="17"):
        v.duration(16)
    with pytest.raises(ValueError, match="positive int"):
        Vocab(0, 4, 1024)


def test_vocab_is_frozen_and_hashable():
    v = Vocab(2**12, 4, 1024)
    assert v == VOCABS["tiny"] and hash(v) == hash(VOCABS["tiny"])
    with pytest.raises(AttributeError):
        v.audio_levels = 3
