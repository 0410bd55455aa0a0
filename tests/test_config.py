import json

import pytest
from hypothesis import given, strategies as st

import sparsecc
from sparsecc import NM, Block, Channel, CompileConfig, ConfigError, Dense, parse_pattern


@pytest.mark.parametrize("text, value", [
    ("2:4", NM(2, 4)), ("1:4", NM(1, 4)), ("4:8", NM(4, 8)),
    ("block32x32@0.25", Block(32, 32, density=0.25)), ("block64x16@0.1", Block(64, 16, 0.1)),
    ("channel0.5", Channel(ratio=0.5)), ("channel0.5/64", Channel(0.5, round_to=64)),
    ("dense", Dense()), (" DENSE ", Dense()),
])
def test_pattern_strings(text, value):
    p = parse_pattern(text)
    assert p == value
    assert parse_pattern(str(p)) == p


@pytest.mark.parametrize("bad", ["3:2", "0:4", "2-4", "block32@0.25", "block32x32@1.5",
                                 "channel1.0", "channel0", "sparse", ""])
def test_bad_pattern_strings_are_named(bad):
    with pytest.raises(ConfigError):
        parse_pattern(bad)


def test_pattern_values_validate():
    with pytest.raises(ConfigError, match="0 < n < m"):
        NM(4, 4)
    with pytest.raises(ConfigError, match="density"):
        Block(32, 32, density=0)
    with pytest.raises(ConfigError, match="round_to"):
        Channel(0.5, round_to=0)
    assert sparsecc.Channel(ratio=0.5, round_to=64).density == 0.5


patterns = st.sampled_from(["2:4", "1:4", "4:8", "dense", "channel0.25", "channel0.5/64",
                            "block32x32@0.25", "block64x64@0.1"])
configs = st.builds(
    CompileConfig,
    target=st.sampled_from(["h100", "a100", "l4", "tpu-v4", "tpu-v5e", "cpu-x86"]),
    backend=st.sampled_from([None, "onnx", "torch"]),   # every target has both
    patterns=st.lists(patterns, min_size=1, max_size=4).map(tuple),
    budget=st.floats(0, 1),
    batch=st.none() | st.integers(1, 1 << 16),
    seq=st.none() | st.integers(1, 1 << 14),
    mode=st.sampled_from([None, "prefill", "decode", "vision"]),
    overrides=st.dictionaries(st.sampled_from([r"layers\.0\..*", "fc", r".*mlp.*"]), patterns,
                              max_size=3).map(lambda d: tuple(d.items())),
    dtype=st.sampled_from(["f16", "bf16", "f32"]),
)


@given(configs)
def test_config_round_trips_through_json(config):
    d = json.loads(json.dumps(config.to_dict()))
    assert CompileConfig.from_dict(d) == config


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="unknown target 'h300'; known: a100, cpu-x86"):
        CompileConfig(target="h300")
    with pytest.raises(ConfigError, match="unknown backend"):
        CompileConfig(backend="tensorrt")
    with pytest.raises(ConfigError, match="unknown pattern 'x'"):
        CompileConfig(patterns=("2:4", "x"))
    with pytest.raises(ConfigError, match="batch must be an integer from 1 to"):
        CompileConfig(batch=0)
    with pytest.raises(ConfigError, match="not a valid regex"):
        CompileConfig(overrides={"(": "2:4"})
    with pytest.raises(ConfigError, match="unknown config keys"):
        CompileConfig.from_dict({"targett": "h100"})


def test_overrides_match_names_and_regexes():
    c = CompileConfig(overrides={"fc": "2:4", r"layers\.\d+\.mlp\..*": "channel0.5"})
    assert c.override_for("fc") == NM(2, 4)
    assert c.override_for("layers.3.mlp.up_proj") == Channel(0.5)
    assert c.override_for("layers.3.self_attn.q_proj") is None
    assert CompileConfig(target="cpu").target == "cpu-x86"
