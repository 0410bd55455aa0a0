"""Greedy generation with a static KV cache held in explicit tensors.

A decoder step is a Hugging Face causal LM run on one slice of a sequence, with its KV cache
passed in and out as plain tensors (what HF exports for on-device runtimes, with the cache
moved from buffers into the signature so the step is a pure function torch.export captures):

    step(input_ids [B, S], cache_position [1], k_0, v_0, ..., k_{L-1}, v_{L-1})
        -> (logits [B, S, V], k_0', v_0', ..., k_{L-1}', v_{L-1}')

Caches are [B, kv_heads, max_len, head_dim]. With p = cache_position and positions
P = p + arange(S), layer l writes its S new keys and values at P and every query i attends
to the cache positions j <= P[i]:

    k_l' = k_l.index_copy(2, P, K_l),   v_l' = v_l.index_copy(2, P, V_l)
    attention mask [1, 1, S, max_len]:  mask[i, j] = (j <= P[i])

Cache positions past the current one hold stale or zero entries that the mask hides, so a
cache never needs clearing between generations. The model's own attention code runs
unchanged (HF's `Cache` API: `update(k, v, layer)` per layer); RoPE gets `position_ids = P`.
`inplace=False` writes the update functionally (for capture); `inplace=True` uses
`index_copy_` on the given tensors and returns them, as HF's StaticCache does (the eager and
torch.compile baselines run this way).

`prefill` feeds the prompt one token per step (one captured shape serves both phases) and
`decode` runs the greedy loop: each step's argmax is the next step's input. A `Stepper` is
what the loop calls: it owns the caches and maps (ids [B, 1], position) to logits [B, 1, V].

Plain torch and transformers; transformers is imported when a step is built.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

ATTENTION_MASKS = ("sdpa", "eager")   # HF attention implementations whose mask we build


def cache_names(layers: int) -> tuple[str, ...]:
    """The step's cache inputs in order: k_0, v_0, k_1, v_1, ..."""
    return tuple(f"{kv}_{i}" for i in range(layers) for kv in ("k", "v"))


def _text_config(model: torch.nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no `config`: a decoder step needs a "
                        f"Hugging Face causal LM (LlamaForCausalLM, MistralForCausalLM, ...)")
    return config.get_text_config() if hasattr(config, "get_text_config") else config


@dataclasses.dataclass(frozen=True)
class CacheShape:
    """Sizes of one layer's cache: [batch, kv_heads, max_len, head_dim], `layers` of them."""
    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> CacheShape:
        c = _text_config(model)
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        return cls(c.num_hidden_layers, getattr(c, "num_key_value_heads", None) or heads,
                   head_dim)


class DecoderStep(torch.nn.Module):
    """One decoder step of `model` (an HF causal LM) over explicit cache tensors; see the
    module docstring. Build it with `decoder_step(model)`, which names the cache inputs
    k_0, v_0, ... in forward's signature (so captured graphs name them too)."""

    def __init__(self, model: torch.nn.Module, inplace: bool = False) -> None:
        super().__init__()
        self.model = model
        self.inplace = inplace
        self.shape = CacheShape.of(model)
        attn = getattr(_text_config(model), "_attn_implementation", None) or "eager"
        if attn not in ATTENTION_MASKS:
            raise ValueError(f"decoder step: attention implementation {attn!r} is not "
                             f"supported (one of {ATTENTION_MASKS})")
        self.additive_mask = attn == "eager"
        params = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.takes_cache_position = "cache_position" in params    # transformers < 5.2x
        _cache_classes()

    def new_caches(self, batch: int, max_len: int, *, dtype: torch.dtype = torch.float32,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        """Zeroed caches for `batch` sequences of up to `max_len` tokens."""
        s = self.shape
        return tuple(torch.zeros(batch, s.kv_heads, max_len, s.head_dim, dtype=dtype,
                                 device=device) for _ in range(2 * s.layers))

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(caches) != 2 * self.shape.layers:
            raise TypeError(f"expected {2 * self.shape.layers} cache tensors, got {len(caches)}")
        device = input_ids.device
        seq, max_len = input_ids.shape[1], caches[0].shape[2]
        positions = cache_position + torch.arange(seq, device=device)
        mask = (torch.arange(max_len, device=device)[None, :] <= positions[:, None])[None, None]
        if self.additive_mask:     # HF's eager attention adds its mask to the scores
            dtype = self.model.get_input_embeddings().weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(
                ~mask, torch.finfo(dtype).min)
        cache = tensor_cache(caches, positions, self.inplace)
        kwargs = {self.cache_kwarg: cache}
        if self.takes_cache_position:
            kwargs["cache_position"] = positions
        out = self.model(input_ids=input_ids, attention_mask=mask,
                         position_ids=positions[None], use_cache=True, **kwargs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        return (logits, *(t for layer in cache.layers for t in (layer.keys, layer.values)))


@functools.lru_cache(maxsize=None)
def _named_step_class(layers: int) -> type[DecoderStep]:
    P = inspect.Parameter
    sig = inspect.Signature([P(n, P.POSITIONAL_OR_KEYWORD) for n in
                             ("self", "input_ids", "cache_position", *cache_names(layers))])

    def forward(self, *args):
        return DecoderStep.forward(self, *args)

    forward.__signature__ = sig
    return type(f"DecoderStep{layers}", (DecoderStep,), {"forward": forward,
                                                          "__module__": __name__})


def decoder_step(model: torch.nn.Module, *, inplace: bool = False) -> DecoderStep:
    """The decoder step of `model`, its cache inputs named k_0, v_0, ... (`model` is held by
    reference and not modified; put it in eval mode first)."""
    return _named_step_class(CacheShape.of(model).layers)(model, inplace=inplace)


_CACHE_CLASSES: tuple[type, type] | None = None


def _cache_classes() -> tuple[type, type]:
    """HF's Cache over our layers: a StaticLayer whose tensors are the step's inputs. Built
    once, when the first step is (not while torch.compile traces a forward)."""
    global _CACHE_CLASSES
    if _CACHE_CLASSES is not None:
        return _CACHE_CLASSES
    from transformers.cache_utils import Cache, StaticLayer

    class TensorLayer(StaticLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor,
                     positions: torch.Tensor, inplace: bool) -> None:
            super().__init__(max_cache_len=keys.shape[2])
            self.keys, self.values, self.positions = keys, values, positions
            self.inplace, self.device, self.is_initialized = inplace, keys.device, True

        def update(self, key_states, value_states, *args, **kwargs):
            k = key_states.to(self.keys.dtype)
            v = value_states.to(self.values.dtype)
            if self.inplace:
                self.keys.index_copy_(2, self.positions, k)
                self.values.index_copy_(2, self.positions, v)
            else:
                self.keys = self.keys.index_copy(2, self.positions, k)
                self.values = self.values.index_copy(2, self.positions, v)
            return self.keys, self.values

        def get_seq_length(self):
            return self.positions[0]

        def get_mask_sizes(self, *args, **kwargs):
            return self.max_cache_len, 0

    class TensorCache(Cache):
        def __init__(self, layers: list) -> None:
            super().__init__(layers=layers)

    _CACHE_CLASSES = TensorLayer, TensorCache
    return _CACHE_CLASSES


def tensor_cache(caches: Sequence[torch.Tensor], positions: torch.Tensor, inplace: bool):
    """An HF `Cache` whose layer l holds caches[2l] (keys) and caches[2l + 1] (values) and
    writes new entries at `positions`."""
    layer_cls, cache_cls = _cache_classes()
    return cache_cls([layer_cls(caches[i], caches[i + 1], positions, inplace)
                      for i in range(0, len(caches), 2)])


def step_inputs(step: DecoderStep, batch: int, max_len: int, generator: torch.Generator,
                *, position: int | None = None, filled: bool = False) -> tuple[torch.Tensor, ...]:
    """Inputs of one step: random token ids [batch, 1], a position (random below max_len when
    None) and caches, zero or (`filled`) N(0, 1) — about the scale of a random-weight model's
    keys and values, for calibration."""
    vocab = step.model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, 1), generator=generator)
    pos = (torch.randint(0, max_len, (1,), generator=generator) if position is None
           else torch.tensor([position]))
    caches = step.new_caches(batch, max_len)
    if filled:
        for c in caches:
            c.normal_(generator=generator)
    return (ids, pos, *caches)


def step_dynamic_dims(step: DecoderStep) -> dict[str, dict[int, str]]:
    """The batch axis of the token ids and of every cache; all else is static."""
    return {name: {0: "batch"} for name in ("input_ids", *cache_names(step.shape.layers))}


# -- the greedy loop ------------------------------------------------------------------------
Stepper = Callable[[torch.Tensor, int], torch.Tensor]


class EagerStepper:
    """Calls `module(ids, position, *caches)` and keeps the caches it returns (the same
    tensors when the module updates them in place)."""

    def __init__(self, module: Callable[..., Any], caches: Sequence[torch.Tensor]) -> None:
        self.module = module
        self.caches = list(caches)
        self.in_place: bool | None = None     # did the last step return its input caches?

    def __call__(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        pos = torch.tensor([position], device=ids.device)
        with torch.no_grad():
            out = self.module(ids, pos, *self.caches)
        self.in_place = all(o.data_ptr() == c.data_ptr() for o, c in zip(out[1:], self.caches))
        self.caches = list(out[1:])
        return out[0]


@dataclasses.dataclass
class Decoded:
    """The new tokens [B, N]; with `gaps`, each step's top-1 minus top-2 logit [B, N]."""
    tokens: torch.Tensor
    gaps: torch.Tensor | None = None


def prefill(stepper: Stepper, prompt_ids: torch.Tensor) -> None:
    """Feed all but the prompt's last token, one per step (positions 0 .. P-2)."""
    for p in range(prompt_ids.shape[1] - 1):
        stepper(prompt_ids[:, p:p + 1], p)


def decode(stepper: Stepper, prompt_ids: torch.Tensor, new_tokens: int, *,
           forced: torch.Tensor | None = None, gaps: bool = False) -> Decoded:
    """The greedy loop after `prefill`: `new_tokens` steps from the prompt's last token (at
    position P-1), each step's argmax the next input. `forced` [B, N] feeds those tokens
    instead (teacher forcing: the argmaxes then say what this model would pick after the
    given prefix)."""
    start = prompt_ids.shape[1] - 1
    token = prompt_ids[:, start:]
    out, margins = [], []
    for i in range(new_tokens):
        logits = stepper(token, start + i)[:, -1]
        best = logits.argmax(-1, keepdim=True)
        out.append(best)
        if gaps:
            top = logits.float().topk(2, dim=-1).values
            margins.append(top[:, 0] - top[:, 1])
        token = forced[:, i:i + 1] if forced is not None else best
    return Decoded(torch.cat(out, 1), torch.stack(margins, 1) if gaps else None)


def generate(stepper: Stepper, prompt_ids: torch.Tensor, new_tokens: int, **kw) -> Decoded:
    """Greedy generation: `prefill` then `decode` (keyword arguments go to `decode`)."""
    prefill(stepper, prompt_ids)
    return decode(stepper, prompt_ids, new_tokens, **kw)
