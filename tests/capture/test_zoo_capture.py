"""Every zoo model: capture -> print -> parse equals, verify passes, and the interpreter equals
PyTorch within 1e-5 relative in fp32 (tiny configs here; full configs under -m slow)."""
import pytest
import torch

from sparsecc import models
from sparsecc.capture import capture
from sparsecc.ir import parse, print_graph, run, verify


def _check(z, assert_close):
    g = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims, name=z.name)
    assert parse(print_graph(g)) == g
    verify(g)
    for batch in z.calibration[:2] or [z.example_inputs]:
        with torch.no_grad():
            ref = z.model(*batch)
        assert_close(run(g, batch), ref, 1e-5)
    return g


@pytest.mark.parametrize("name", models.names())
def test_zoo_model_tiny(name, assert_close, require_weights):
    require_weights(name)
    z = models.get(name, tiny=True)
    g = _check(z, assert_close)
    for inp, axes in z.dynamic_dims.items():
        shape = g.values[inp].shape
        for axis, dim in axes.items():
            assert shape[axis] == dim, f"{inp} axis {axis}: {shape}"


def test_minilm_real_weights_dynamic_batch_and_seq(assert_close, require_weights):
    require_weights("minilm")
    z = models.get("minilm", tiny=True)
    g = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims)
    assert g.values["input_ids"].shape == ("batch", "seq")
    assert g.values["attention_mask"].shape == ("batch", "seq")
    assert len(g.find("linear")) == 36 and len(g.find("scaled_dot_product_attention")) == 6
    # real weights: the captured word embeddings are the package's, not a random init
    emb = g.params["bert.embeddings.word_embeddings.weight"] \
        if "bert.embeddings.word_embeddings.weight" in g.params else \
        next(v for k, v in g.params.items() if k.endswith("word_embeddings.weight"))
    assert tuple(emb.shape) == (30522, 384)
    # other batch and sequence sizes than captured, with padding
    for batch, seq in [(1, 5), (3, 23)]:
        ids = torch.randint(1000, 5000, (batch, seq))
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[-1, seq // 2:] = 0
        with torch.no_grad():
            ref = z.model(ids, mask)
        assert_close(run(g, [ids, mask]), ref, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", models.names())
def test_zoo_model_full(name, assert_close, require_weights):
    require_weights(name)
    _check(models.get(name), assert_close)
