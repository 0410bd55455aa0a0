"""Pattern masks: exact counts, whole blocks and rows, highest scores kept; check() reasons."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecc.errors import ConfigError
from sparsecc.patterns import NM, Block, Channel, Composite, Dense, parse_pattern

FAST = settings(max_examples=40, deadline=None)


def _weight(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


@st.composite
def nm_cases(draw):
    m = draw(st.integers(2, 8))
    n = draw(st.integers(1, m - 1))
    out = draw(st.integers(1, 6))
    groups = draw(st.integers(1, 4))
    kernel = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    integer = draw(st.booleans())   # integer weights: many ties
    return NM(n, m), (out, groups * m, *kernel), draw(st.integers(0, 1000)), integer


@given(nm_cases())
@FAST
def test_nm_mask_keeps_n_highest_of_every_m(case):
    p, shape, seed, integer = case
    w = _weight(seed, shape)
    if integer:
        w = w.round()
    mask = p.mask(w)
    assert mask.shape == w.shape and mask.dtype == torch.bool
    # groups run along the reduction dim at each kernel position
    mg = mask.movedim(1, -1).reshape(-1, p.m)
    sg = w.abs().movedim(1, -1).reshape(-1, p.m)
    assert (mg.sum(dim=1) == p.n).all()
    kept_min = torch.where(mg, sg, torch.inf).amin(dim=1)
    dropped_max = torch.where(mg, -torch.inf, sg).amax(dim=1)
    assert (kept_min >= dropped_max).all()
    assert torch.equal(p.mask(w), mask), "masks must be deterministic"


def test_nm_ties_go_to_the_lower_index():
    assert NM(2, 4).mask(torch.ones(1, 8)).tolist() == [[True, True, False, False] * 2]


def test_nm_conv_groups_run_along_input_channels():
    w = torch.zeros(1, 4, 1, 2)
    w[0, :, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    w[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = NM(2, 4).mask(w)
    assert mask[0, :, 0, 0].tolist() == [True, True, False, False]
    assert mask[0, :, 0, 1].tolist() == [False, False, True, True]


@st.composite
def block_cases(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    br, bc = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    density = draw(st.floats(0.01, 1.0))
    conv = draw(st.booleans())
    shape = (br * rows, bc * cols, 1, 1) if conv else (br * rows, bc * cols)
    return Block(rows, cols, density), shape, draw(st.integers(0, 1000))


@given(block_cases())
@FAST
def test_block_mask_keeps_whole_best_blocks(case):
    p, shape, seed = case
    w = _weight(seed, shape)
    mask = p.mask(w)
    assert mask.shape == w.shape
    br, bc = shape[0] // p.rows, shape[1] // p.cols
    tiles = mask.reshape(br, p.rows, bc, p.cols)
    kept = tiles.all(dim=(1, 3))
    assert torch.equal(kept, tiles.any(dim=(1, 3))), "a block is partly kept"
    assert int(kept.sum()) == max(1, round(p.density * br * bc))
    sums = w.abs().reshape(br, p.rows, bc, p.cols).sum(dim=(1, 3))
    if (~kept).any():
        assert sums[kept].min() >= sums[~kept].max()


@st.composite
def channel_cases(draw):
    ratio = draw(st.floats(0.05, 0.95))
    round_to = draw(st.sampled_from([1, 2, 4, 8]))
    out = draw(st.integers(1, 40))
    kernel = draw(st.sampled_from([(), (3, 3)]))
    return Channel(ratio, round_to), (out, 3, *kernel), draw(st.integers(0, 1000))


@given(channel_cases())
@FAST
def test_channel_mask_keeps_whole_best_rows(case):
    p, shape, seed = case
    w = _weight(seed, shape)
    mask = p.mask(w).reshape(shape[0], -1)
    rows = mask.all(dim=1)
    assert torch.equal(rows, mask.any(dim=1)), "a row is partly kept"
    kept = p.kept_channels(shape[0])
    assert int(rows.sum()) == kept
    assert kept <= shape[0] and (kept % p.round_to == 0 or kept == shape[0])
    sums = w.abs().reshape(shape[0], -1).sum(dim=1)
    if (~rows).any():
        assert sums[rows].min() >= sums[~rows].max()


def test_kept_channels_rounds_and_clips():
    assert Channel(0.5, 64).kept_channels(14336) == 7168
    assert Channel(0.5, 64).kept_channels(100) == 64      # 50 rounds to 64 (at least one unit)
    assert Channel(0.3, 64).kept_channels(48) == 48       # clipped to the channels there are
    assert Channel(0.25).kept_channels(10) == 8


def test_scores_override_magnitude():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    s = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert NM(2, 4).mask(w, s).tolist() == [[True, True, False, False]]
    assert Dense().mask(w).all()
    with pytest.raises(ValueError, match="scores of shape"):
        NM(2, 4).mask(w, s.t())


@pytest.mark.parametrize("pattern, shape, op, reason", [
    ("2:4", (64, 770), "linear", "K=770 not divisible by 4"),
    ("2:4", (64, 1, 3, 3), "conv2d", "depthwise conv"),
    ("2:4", (64, 6, 3, 3), "conv2d", "in/groups=6 not divisible by 4"),
    ("2:4", (64, 3), "embedding", "not a weight layer"),
    ("2:4", (64, 64, 3), "linear", "rank 3"),
    ("block32x32@0.25", (48, 64), "linear", "out=48 not divisible by block rows 32"),
    ("block32x32@0.25", (64, 3, 3, 3), "conv2d", "in*kernel=27 not divisible by block cols 32"),
    ("channel0.5/64", (96, 64), "linear", "out=96 < 2*round_to=128"),
    ("channel0.01/64", (128, 64), "linear", "keeps all 128 output channels"),
    ("channel0.5+2:4", (64, 10), "linear", "K=10 not divisible by 4"),
    ("channel0.5/64+2:4", (64, 64), "linear", "out=64 < 2*round_to=128"),
])
def test_check_names_the_reason(pattern, shape, op, reason):
    got = parse_pattern(pattern).check(shape, op)
    assert got is not None and reason in got


@pytest.mark.parametrize("pattern, shape, op", [
    ("2:4", (64, 768), "linear"), ("2:4", (64, 32, 3, 3), "conv2d"), ("4:8", (8, 16), "mm"),
    ("block32x32@0.25", (64, 64), "linear"), ("block4x4@0.5", (8, 2, 2, 2), "conv2d"),
    ("channel0.5/64", (256, 64), "linear"), ("channel0.5+2:4", (64, 64), "linear"),
    ("dense", (3, 5), "linear"),
])
def test_check_accepts_good_shapes(pattern, shape, op):
    assert parse_pattern(pattern).check(shape, op) is None


@pytest.mark.parametrize("text", ["channel0.5+2:4", "channel0.25/64+1:4", "channel0.5+4:8"])
def test_composite_string_round_trips(text):
    p = parse_pattern(text)
    assert isinstance(p, Composite) and str(p) == text and parse_pattern(str(p)) == p
    assert p.density == pytest.approx(p.channel.density * p.nm.density)


@pytest.mark.parametrize("bad", ["2:4+channel0.5", "channel0.5+block4x4@0.5", "channel0.5+"])
def test_bad_composites_are_refused(bad):
    with pytest.raises(ConfigError):
        parse_pattern(bad)


def test_composite_mask_is_nm_on_the_kept_rows():
    w = _weight(3, (8, 16))
    p = Composite(Channel(0.5), NM(2, 4))
    mask = p.mask(w)
    rows = Channel(0.5).mask(w)[:, 0]
    assert int(rows.sum()) == 4
    assert not mask[~rows].any(), "removed channels must be all False"
    assert torch.equal(mask[rows], NM(2, 4).mask(w[rows]))
    assert (mask[rows].reshape(-1, 4).sum(dim=1) == 2).all()
