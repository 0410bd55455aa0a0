"""Tests of models/minilm.py and models/pydoc_text.py: real weights, offline load, pooling, corpus."""

from __future__ import annotations

import functools
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from sparsecc.models import get
from sparsecc.models.minilm import (
    load_minilm_bert,
    load_minilm_encoder,
    minilm_tokenizer,
    tokenize_padded,
    topic_paragraphs,
)
from sparsecc.models.pydoc_text import pydoc_bytes

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs a song on the guitar.",
    "The central bank raised interest rates again this quarter.",
    "How do I reverse a list in Python?",
    "What is the way to invert the order of a Python list?",
]


@functools.cache
def encoder_and_tokenizer():
    return load_minilm_encoder(), minilm_tokenizer()


def embed(texts: list[str], seq: int = 32) -> torch.Tensor:
    encoder, tokenizer = encoder_and_tokenizer()
    with torch.no_grad():
        return encoder(*tokenize_padded(tokenizer, texts, seq))


def test_paraphrases_are_closer_than_unrelated_sentences(require_weights):
    require_weights("minilm")
    embeddings = F.normalize(embed(SENTENCES), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[3, 4] > similarity[3, 2] + 0.3
    assert similarity[3, 4] > similarity[3, 0] + 0.3


def test_encoder_equals_hugging_face_forward_mean_pooled(require_weights):
    require_weights("minilm")
    encoder, tokenizer = encoder_and_tokenizer()
    input_ids, attention_mask = tokenize_padded(tokenizer, SENTENCES, 20)
    assert (attention_mask == 0).any()  # padding present, so the mask matters
    bert = load_minilm_bert()
    with torch.no_grad():
        hidden = bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).float()
        expected = (hidden * weights).sum(1) / weights.sum(1)
        torch.testing.assert_close(encoder(input_ids, attention_mask), expected, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_the_embedding(require_weights):
    require_weights("minilm")
    short, long = embed(SENTENCES[:2], seq=16), embed(SENTENCES[:2], seq=40)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


def test_encoder_has_no_dropout_and_no_pooler(require_weights):
    require_weights("minilm")
    encoder, _ = encoder_and_tokenizer()
    assert not any(isinstance(m, torch.nn.Dropout) for m in encoder.modules())
    assert encoder.bert.pooler is None
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 36


def test_normalized_variant_gives_unit_vectors(require_weights):
    require_weights("minilm")
    encoder = load_minilm_encoder(normalize=True)
    _, tokenizer = encoder_and_tokenizer()
    with torch.no_grad():
        embeddings = encoder(*tokenize_padded(tokenizer, SENTENCES, 24))
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(len(SENTENCES)))


def test_loads_with_the_network_blocked(monkeypatch, require_weights):
    require_weights("minilm")
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading minilm")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    zoo_model = get("minilm", tiny=True)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert zoo_model.model(*zoo_model.example_inputs).shape == (2, 384)


def test_zoo_inputs_are_tokenized_topic_paragraphs(require_weights):
    require_weights("minilm")
    zoo_model = get("minilm", tiny=True)
    _, tokenizer = encoder_and_tokenizer()
    paragraphs = [text for _, text in topic_paragraphs()]
    all_ids, _ = tokenize_padded(tokenizer, paragraphs, zoo_model.workload["seq"])
    for batch in (zoo_model.example_inputs, *zoo_model.calibration):
        input_ids, attention_mask = batch
        assert input_ids[:, 0].eq(tokenizer.cls_token_id).all()
        assert attention_mask.sum(1).ge(3).all()
        for row in input_ids:
            assert (all_ids == row).all(dim=1).any()


@pytest.mark.parametrize("seq", [1, 513])
def test_sequence_length_outside_the_model_is_refused(seq, require_weights):
    require_weights("minilm")
    with pytest.raises(ValueError, match="must be 2..512"):
        get("minilm", tiny=True, seq=seq)


def test_topic_paragraphs_are_labelled_prose():
    labelled = topic_paragraphs()
    topics = {topic for topic, _ in labelled}
    assert 350 <= len(labelled) <= 450 and 60 <= len(topics) <= 79
    assert labelled == topic_paragraphs()
    counts = {topic: sum(t == topic for t, _ in labelled) for topic in topics}
    assert min(counts.values()) >= 2 and max(counts.values()) <= 8
    for topic, paragraph in labelled:
        assert len(paragraph) >= 40
        assert paragraph == " ".join(paragraph.split())
        assert not set(paragraph) <= set("*=-^~ ")
    assert [t for t, _ in labelled] == sorted(t for t, _ in labelled)


def test_topic_paragraph_options():
    assert len(topic_paragraphs(max_per_topic=2)) < len(topic_paragraphs())
    assert all(len(p) >= 200 for _, p in topic_paragraphs(min_chars=200))
    with pytest.raises(ValueError):
        topic_paragraphs(min_chars=0)


def test_pydoc_bytes_is_utf8_text():
    corpus = pydoc_bytes()
    assert len(corpus) > 300_000
    assert "assert" in corpus.decode("utf-8")
