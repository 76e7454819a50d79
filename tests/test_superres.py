"""Super-resolution contracts on the debug preset: windows (partition/merge, locality of self- and low-res
cross-attention), token factorization, the MaskGIT schedule and decoding with two guidance scales, preset
sizes and grids (tiny and paper on the meta device), input checks, save/load."""

import dataclasses
import itertools

import pytest
import torch

from videopoet.sampling.masked import cosine_schedule, guide, mask_count, maskgit_decode, maskgit_step
from videopoet.superres.model import (
    PRESETS,
    FactorEmbedding,
    SuperResTransformer,
    WindowCrossAttention,
    WindowSelfAttention,
    join_ids,
    param_count,
    resolve_window,
    split_ids,
    window_merge,
    window_partition,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = PRESETS["debug"]
GRID = (2, 8, 8)  # debug high-res grid; low-res (2, 4, 4)
WINDOWS = [resolve_window(w, GRID) for w in CFG.windows]  # (1, 8, 2), (1, 2, 8), (2, 2, 2)


def _model() -> SuperResTransformer:
    torch.manual_seed(0)
    return SuperResTransformer.from_preset("debug").eval()


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, h, w = GRID
    hi = torch.randint(0, CFG.mask_id + 1, (b, t, h, w), generator=g)  # codes and [MASK]s
    lo = torch.randint(0, CFG.mask_id, (b, t, h // 2, w // 2), generator=g)
    text = torch.randn(b, 3, CFG.text_dim, generator=g)
    return hi, lo, text


def _window_index(pos, window):
    return tuple(p // s for p, s in zip(pos, window))


def _changed_positions(a, b, tol=1e-9):
    """Grid positions (t, y, x) of batch row 0 where two (B, T, H, W, D) tensors differ."""
    diff = (a - b).abs().amax(-1)[0] > tol  # (T, H, W)
    return {tuple(p) for p in diff.nonzero().tolist()}


# ============================================================================================ windows
@pytest.mark.parametrize("grid", [GRID, (5, 32, 32), (5, 56, 32)])
def test_partition_and_merge_are_inverses_on_each_axis(grid):
    cfg = PRESETS["debug" if grid == GRID else "tiny"]
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij"), -1)  # (T, H, W, 3)
    for window in (resolve_window(w, grid) for w in cfg.windows):
        x = coords[None].float()  # (1, T, H, W, 3): each token carries its own coordinates
        parts = window_partition(x, window)  # (n, Lw, 3)
        assert parts.shape[1] == window[0] * window[1] * window[2]
        assert torch.equal(window_merge(parts, window, grid), x)
        for part in parts.long():  # every window is one tile: all its tokens share a window index
            assert len({_window_index(p, window) for p in part.tolist()}) == 1


@pytest.mark.parametrize("window", WINDOWS)
def test_self_attention_stays_inside_its_window(window):
    torch.manual_seed(0)
    layer = WindowSelfAttention(CFG.dim, CFG.n_heads).double()
    x = torch.randn(1, *GRID, CFG.dim, dtype=torch.float64)
    probe = (1, 5, 3)  # (t, y, x)
    y = x.clone()
    y[(0, *probe)] += 1.0
    changed = _changed_positions(layer(x, window), layer(y, window))
    same_window = {
        p
        for p in itertools.product(*map(range, GRID))
        if _window_index(p, window) == _window_index(probe, window)
    }
    assert changed == same_window


@pytest.mark.parametrize("window", WINDOWS)
def test_low_res_cross_attention_is_windowed(window):
    torch.manual_seed(0)
    layer = WindowCrossAttention(CFG.dim, CFG.n_heads).double()
    x = torch.randn(1, *GRID, CFG.dim, dtype=torch.float64)
    lo = torch.randn(1, GRID[0], GRID[1] // 2, GRID[2] // 2, CFG.dim, dtype=torch.float64)
    probe = (1, 2, 1)  # low-res (t, y, x): covers high-res rows 4–5, columns 2–3
    lo2 = lo.clone()
    lo2[(0, *probe)] += 1.0
    changed = _changed_positions(layer(x, lo, window), layer(x, lo2, window))
    lo_window = (window[0], window[1] // 2, window[2] // 2)
    under = _window_index(probe, lo_window)  # the isomorphic window: same window index on both grids
    assert changed == {p for p in itertools.product(*map(range, GRID)) if _window_index(p, window) == under}
    assert (1, 4, 2) in changed  # a high-res token right under the low-res one


# ============================================================================================ tokens
def test_factor_indices_recompose_every_id_and_the_embedding_factorizes():
    n = CFG.factor_size
    ids = torch.arange(CFG.mask_id)
    a, b = split_ids(ids, n)
    assert torch.equal(join_ids(a, b, n), ids) and 0 <= a.min() and a.max() < n and b.max() < n
    torch.manual_seed(0)
    embed = FactorEmbedding(n, CFG.dim)
    with torch.no_grad():
        embed.mask.normal_()
    assert torch.equal(embed(ids), embed.a(a) + embed.b(b))
    assert torch.equal(embed(torch.tensor([CFG.mask_id]))[0], embed.mask)


def test_greedy_step_composes_the_two_heads_argmaxes():
    n, g = CFG.factor_size, torch.Generator().manual_seed(0)
    la, lb = torch.randn(1, 6, n, generator=g), torch.randn(1, 6, n, generator=g)
    tokens = torch.full((1, 6), CFG.mask_id)
    out = maskgit_step(tokens, la, lb, 0, mask_id=CFG.mask_id, temperature=0.0)
    assert torch.equal(out, join_ids(la.argmax(-1), lb.argmax(-1), n))


# ============================================================================================ schedule
def test_mask_schedule_counts():
    assert cosine_schedule(0.0) == 1.0 and abs(cosine_schedule(1.0)) < 1e-12
    assert [mask_count(s, 4, 16) for s in range(4)] == [14, 11, 6, 0]  # floor(16 · cos(π/2 · s/4))
    for n, steps in [(16, 4), (5120, 24), (128, 24), (4, 10), (1, 1)]:
        counts = [n] + [mask_count(s, steps, n) for s in range(steps)]
        assert counts[-1] == 0
        assert all(c1 < c0 or c0 == 0 for c0, c1 in zip(counts, counts[1:]))  # each step fixes ≥ 1 token


def test_guidance_at_scale_one_is_the_full_row():
    g = torch.Generator().manual_seed(0)
    full, a, b = (torch.randn(4, 8, generator=g) for _ in range(3))
    assert torch.equal(guide(full, a, b, 1.0, 1.0), full)
    assert torch.allclose(guide(full, a, b, 3.0, 2.0), full + 2 * (full - a) + (full - b))


class _Recorder:
    """Wraps a model: records every call's high-res input; optionally scrambles the guidance rows."""

    def __init__(self, model, scramble=False):
        self.model, self.config, self.scramble, self.inputs, self.conditions = (
            model,
            model.config,
            scramble,
            [],
            [],
        )

    def __call__(self, hi, lo, text, text_mask, draft=None):
        self.inputs.append(hi.clone())
        self.conditions.append((lo.clone(), None if draft is None else draft.clone()))
        out = self.model(hi, lo, text, text_mask, draft)
        if not self.scramble:
            return out
        b = 2  # the full rows (_inputs' batch); the guidance rows come after them
        return type(out)(*(torch.cat([x[:b], torch.randn_like(x[b:]) * 10]) for x in out))


def test_maskgit_decode_fills_keeps_and_repeats():
    model = _model()
    _, lo, text = _inputs()
    kwargs = dict(steps=4, text_scale=3.0, lo_scale=2.0, temperature=1.0)
    rec = _Recorder(model)
    out = maskgit_decode(rec, lo, text, None, seed=7, **kwargs)
    assert out.shape == (2, *GRID) and int(out.max()) < CFG.mask_id and int(out.min()) >= 0
    n = out[0].numel()
    seen = [x[:2].flatten(1) for x in rec.inputs] + [out.flatten(1)]  # full rows, step by step
    masked = [int((s == CFG.mask_id).sum(1).max()) for s in seen]
    assert masked == [n] + [mask_count(s, 4, n) for s in range(4)]
    for before, after in zip(seen, seen[1:]):
        fixed = before != CFG.mask_id
        assert torch.equal(after[fixed], before[fixed])  # a fixed token never changes
    assert torch.equal(maskgit_decode(model, lo, text, None, seed=7, **kwargs), out)
    assert not torch.equal(maskgit_decode(model, lo, text, None, seed=8, **kwargs), out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled MaskGIT forward is a GPU path")
def test_compiled_maskgit_on_gpu_matches_eager():
    torch.manual_seed(0)
    model = SuperResTransformer.from_preset("debug").cuda().eval()
    _, lo, text = (x.cuda() for x in _inputs(b=1))
    for kw in (dict(temperature=0.0), dict(seed=3)):
        kw |= dict(steps=6, text_scale=3.0, lo_scale=2.0)
        eager = maskgit_decode(model, lo, text, **kw)
        for _ in range(2):  # the second call replays the captured graphs
            assert torch.equal(maskgit_decode(model, lo, text, compile=True, **kw), eager)


def test_maskgit_decode_at_scale_one_ignores_the_guidance_rows():
    model = _model()
    _, lo, text = _inputs()
    plain = maskgit_decode(model, lo, text, None, steps=3, seed=1)
    scrambled = maskgit_decode(_Recorder(model, scramble=True), lo, text, None, steps=3, seed=1)
    assert torch.equal(plain, scrambled)
    guided = maskgit_decode(_Recorder(model, scramble=True), lo, text, None, steps=3, seed=1, text_scale=2.0)
    assert not torch.equal(plain, guided)


@pytest.mark.parametrize(
    "with_text,text_scale,lo_scale,rows",
    [(True, 1, 1, 1), (True, 3, 1, 2), (True, 3, 2, 3), (False, 3, 2, 2)],
)
def test_only_the_rows_guidance_reads_are_run(with_text, text_scale, lo_scale, rows):
    _, lo, text = _inputs()
    rec = _Recorder(_model())
    maskgit_decode(rec, lo, text if with_text else None, steps=1, text_scale=text_scale, lo_scale=lo_scale)
    assert rec.inputs[0].shape[0] == rows * lo.shape[0]


def test_the_draft_rides_with_the_low_res_rows_and_is_dropped_with_them():
    _, lo, text = _inputs()
    draft = torch.randint(0, CFG.mask_id, (2, *GRID), generator=torch.Generator().manual_seed(4))
    rec = _Recorder(_model())
    maskgit_decode(rec, lo, text, draft=draft, steps=1, text_scale=3.0, lo_scale=2.0)
    rows_lo, rows_draft = rec.conditions[0]  # rows: full, no text, no low-res (2 clips each)
    assert torch.equal(rows_draft[:4], torch.cat([draft, draft])) and torch.equal(
        rows_lo[:4], torch.cat([lo, lo])
    )
    assert (rows_draft[4:] == CFG.mask_id).all() and (rows_lo[4:] == CFG.mask_id).all()


# ============================================================================================ model
def test_draft_path_reads_each_draft_token_in_place_and_none_is_all_mask():
    """With every attention's output projection zeroed, a draft token reaches its own position only; a
    missing draft is the all-[MASK] one; a model without the path refuses a draft."""
    model = _model()
    assert CFG.draft and model.draft_embed is not None
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("wo.weight"):
                param.zero_()
        hi, lo, _ = _inputs(b=1)
        draft = torch.randint(0, CFG.mask_id, hi.shape, generator=torch.Generator().manual_seed(1))
        base = model(hi, lo, draft_tokens=draft).a
        moved = draft.clone()
        moved[0, 1, 2, 3] = (draft[0, 1, 2, 3] + 1) % CFG.mask_id
        assert _changed_positions(model(hi, lo, draft_tokens=moved).a, base) == {(1, 2, 3)}
        assert torch.equal(model(hi, lo).a, model(hi, lo, draft_tokens=torch.full_like(hi, CFG.mask_id)).a)
    with pytest.raises(ValueError, match="shape"):
        model(hi, lo, draft_tokens=draft[:, :1])
    plain = SuperResTransformer(dataclasses.replace(CFG, draft=False))
    assert plain.draft_embed is None
    with pytest.raises(ValueError, match="no draft path"):
        plain(hi, lo, draft_tokens=draft)


def test_parent_path_places_each_low_res_token_on_its_four_children():
    """With every attention's output projection zeroed only the per-position path is left: a low-res
    token then reaches exactly the 2×2 high-res positions under it."""
    model = _model()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("wo.weight"):
                param.zero_()
        hi, lo, _ = _inputs(b=1)
        hi = torch.full_like(hi, CFG.mask_id)  # a fully masked grid, as MaskGIT starts
        base = model(hi, lo).a
        moved = lo.clone()
        moved[0, 1, 2, 3] = (lo[0, 1, 2, 3] + 1) % CFG.mask_id
        changed = _changed_positions(model(hi, moved).a, base)
    assert changed == {(1, y, x) for y in (4, 5) for x in (6, 7)}


def test_text_reaches_the_output_and_masked_text_is_no_text():
    model = _model()
    hi, lo, text = _inputs()
    with torch.no_grad():
        base = model(hi, lo, text, None)
        assert not torch.allclose(base.a, model(hi, lo, text * 2, None).a)
        none = model(hi, lo, None, None)
        off = model(hi, lo, text, torch.zeros(text.shape[:2], dtype=torch.bool))
        dropped = model(hi, None, text, None)
        assert torch.allclose(none.a, off.a, atol=1e-6) and torch.allclose(none.b, off.b, atol=1e-6)
        all_mask = model(hi, torch.full_like(lo, CFG.mask_id), text, None)
    assert torch.equal(dropped.a, all_mask.a)


def test_a_model_without_text_has_no_projection_and_refuses_text():
    torch.manual_seed(0)
    model = SuperResTransformer.from_preset("debug", text_dim=0).eval()
    assert model.text_proj is None
    hi, lo, text = _inputs()
    with torch.no_grad():
        assert model(hi, lo).a.shape == (*hi.shape, CFG.factor_size)
        with pytest.raises(ValueError, match="takes no text"):
            model(hi, lo, text[..., :0])
    with pytest.raises(ValueError, match="text_dim must be"):
        SuperResTransformer.from_preset("debug", text_dim=-1)


@pytest.fixture(scope="module")
def tiny_meta():
    with torch.device("meta"):
        return SuperResTransformer.from_preset("tiny")


def _meta_ids(*shape):
    return torch.zeros(shape, dtype=torch.long, device="meta")


@pytest.mark.parametrize("grid", [(5, 32, 32), (5, 56, 32)])  # 128×128 → 256×256 and 128×224 → 256×448
def test_tiny_preset_grids(tiny_meta, grid):
    assert param_count("tiny") == 3_683_200
    assert PRESETS["tiny"].factor_size == 64
    t, h, w = grid
    logits = tiny_meta(_meta_ids(1, t, h, w), _meta_ids(1, t, h // 2, w // 2))
    assert logits.a.shape == logits.b.shape == (1, t, h, w, 64)


@pytest.mark.parametrize(
    "name,grid,size", [("paper-stage1", (5, 56, 32), 1e9), ("paper-stage2", (5, 112, 64), 5e8)]
)
def test_paper_presets_on_meta(name, grid, size):
    assert abs(param_count(name) / size - 1) < 0.02
    with torch.device("meta"):
        model = SuperResTransformer.from_preset(name)
        logits = model(torch.zeros(1, *grid, dtype=torch.long), None, torch.zeros(1, 4, 2048))
    assert logits.a.shape == (1, *grid, 512)


@pytest.mark.parametrize(
    "hi_shape,lo_shape,why",
    [
        ((1, 5, 20, 32), (1, 5, 10, 16), "tile"),  # 20 rows: the 8-row windows do not tile them
        ((1, 5, 32, 32), (1, 5, 16, 8), "shape"),
        ((1, 5, 31, 32), None, "even"),
        ((1, 32, 32), None, "long tensor"),
    ],
)
def test_bad_shapes_are_value_errors(tiny_meta, hi_shape, lo_shape, why):
    lo = None if lo_shape is None else _meta_ids(*lo_shape)
    with pytest.raises(ValueError, match=why):
        tiny_meta(_meta_ids(*hi_shape), lo)


def test_bad_values_are_value_errors():
    model = _model()
    hi, lo, text = _inputs()
    with pytest.raises(ValueError, match="lie in"):
        model(hi.clamp(max=CFG.mask_id) + 1, lo)
    with pytest.raises(ValueError, match="text must have shape"):
        model(hi, lo, text[..., :10])


def test_save_load_identical_logits(tmp_path):
    model = _model()
    hi, lo, text = _inputs()
    model.save_pretrained(tmp_path / "sr")
    loaded = SuperResTransformer.from_pretrained(tmp_path / "sr")
    with torch.no_grad():
        a, b = model(hi, lo, text), loaded(hi, lo, text)
    assert torch.equal(a.a, b.a) and torch.equal(a.b, b.b)
