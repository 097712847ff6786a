"""Single-pass rationale embeddings: read the pooled hidden states off the generation itself.

Generation already runs every prompt token (in the prefill) and every generated token (in the decode step that
consumes it) through all layers, so the hidden states GRACE pools exist while the rationale is written. The two-pass
path (:func:`~.generation.generate_rationales`, then :func:`~.pooling.select_hidden_states` over
``[prompt | rationale]``) computes them all a second time. This loop keeps them instead:

- the prefill gives the prompt's hidden states; the LM head runs on the last position only (``logits_to_keep=1``),
  and the instruction prefix that every prompt shares is run once for the batch, not once per row;
- the decode step that consumes token ``t`` gives token ``t``'s hidden state and the logits for token ``t + 1``;
- a row whose last token is its first end token (or the ``max_new_tokens``-th token) needs one more step for that
  token's hidden state, and is then dropped from the batch (its KV cache rows go too), so finished rows cost nothing.

Token choice follows ``generate_rationales`` exactly: a fresh configuration (no decoding defaults from the
checkpoint), greedy argmax, or temperature and top-p warpers from transformers then ``torch.multinomial`` over the
whole original batch, so that a ``seed`` draws the same tokens as ``generate`` does. The output has the same
``(B, G)`` right-padded layout as ``generate_rationales``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from .cpu_decode_attention import cpu_decode_attention
from .cpu_decode_layer import lean_decode_layers
from .cpu_linears import packed_linears
from .generation import GenerationSettings, seeded_sampling
from .pooling import position_ids_from_mask
from .slot_cache import compaction_order, decode_cache
from .two_pass import GeneratedBatch


try:
    from grace_st.errors import GraceUserError, GraceUserTypeError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError, GraceUserTypeError = ValueError, TypeError  # type: ignore[misc,assignment]


class DecoderOutputs:
    """Captures the decoder's own output during a causal-LM forward.

    The causal-LM forward returns logits but not ``last_hidden_state``; asking for ``output_hidden_states`` would
    keep every layer of the prefill alive. A forward hook on the decoder reads its output as it passes, so the LM
    head and any logit post-processing stay the model's own.
    """

    def __init__(self, model: Any) -> None:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        if not isinstance(decoder, torch.nn.Module) or decoder is model:
            raise GraceUserTypeError(
                f"Single-pass encoding needs a causal LM with a separate decoder (get_decoder()), got "
                f"{type(model).__name__}. Set single_pass=False on the RationaleGenerator to use the two-pass path."
            )
        self.decoder, self.output = decoder, None

    def __enter__(self) -> DecoderOutputs:
        self._handle = self.decoder.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        self.output = output

    def layer(self, layer: int) -> torch.Tensor:
        """``(B, T, H)`` hidden states of ``layer`` from the last forward."""
        if layer == -1:
            return self.output.last_hidden_state
        states = self.output.hidden_states
        if not -len(states) <= layer < len(states):
            raise GraceUserError(
                f"layer={layer} is out of range for a backbone with {len(states)} hidden-state layers."
            )
        return states[layer]


@dataclass(frozen=True)
class RowGroup:
    """Consecutive rows of a batch that sample as their own ``generate`` call would: own settings, own random stream.

    One decode loop can then write rationales that need different temperatures (GRPO's rollouts and their anchors)
    for the cost of one batch, each group drawing exactly the tokens a separate ``generate`` call would draw from the
    same generator state.

    Attributes:
        rows: how many consecutive rows (the groups cover the batch in order).
        settings: decoding of these rows (``max_new_tokens`` is the batch's).
        generator: the random stream the group draws from; None: torch's default stream.
    """

    rows: int
    settings: GenerationSettings
    generator: torch.Generator | None = None


def greedy_tokens(logits: torch.Tensor) -> torch.Tensor:
    """Each row's argmax, the first index of the largest logit on ties, as ``generate``'s greedy search picks.

    ``max(dim).indices`` rather than ``argmax``: the same indices (both return the first maximal one), but on a CPU
    the reduction over a 49k vocabulary for 57 rows took 0.65 ms against argmax's 2.0 ms, once per decode step.
    """
    return logits.max(dim=-1).indices


class _TokenChooser:
    """Per row group: greedy argmax, or ``generate``'s sampling (temperature, top-p, one multinomial draw per row)."""

    def __init__(self, groups: list[RowGroup], device: torch.device) -> None:
        self.groups, start, temperatures = [], 0, []
        for group in groups:
            settings, warpers = group.settings, []
            if settings.do_sample and settings.temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.do_sample and settings.top_p < 1.0:
                warpers.append(TopPLogitsWarper(settings.top_p))
            self.groups.append((start, start + group.rows, group, LogitsProcessorList(warpers)))
            temperatures += [settings.temperature if settings.do_sample else 1.0] * group.rows
            start += group.rows
        self.temperatures = torch.tensor(temperatures, device=device)

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Next token of each active row; ``rows`` are their indices in the original batch."""
        tokens = torch.empty_like(rows)
        for start, stop, group, warpers in self.groups:
            active = (rows >= start) & (rows < stop)
            if not bool(active.any()):
                continue  # generate() stops drawing once all of its rows have ended
            if not group.settings.do_sample:
                tokens[active] = greedy_tokens(logits[active])
                continue
            probs = warpers(None, logits[active]).softmax(dim=-1)
            # generate() draws for every row of its batch, finished or not; one draw per original row of the group
            # keeps the random stream, hence the sampled tokens, the same as generate()'s for the same state.
            local = rows[active] - start
            full = probs.new_zeros((stop - start, probs.shape[-1]))
            full[:, 0] = 1.0
            full[local] = probs
            tokens[active] = torch.multinomial(full, num_samples=1, generator=group.generator).squeeze(1)[local]
        return tokens

    def logprobs(self, logits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Log-probability of ``tokens`` under each row's temperature-scaled logits (greedy: temperature 1)."""
        scaled = logits / self.temperatures[rows, None]
        return scaled.log_softmax(dim=-1).gather(1, tokens[:, None]).squeeze(1)


@contextmanager
def cpu_kernels(model: Any, rows: int) -> Iterator[None]:
    """The CPU decode kernels of the single pass and the refilled decode, for batches of ``rows`` rows: packed
    linears (oneDNN or MKL), ``bmm`` decode attention and the lean decode step of Llama-family layers
    (``cpu_decode_layer.py``).

    Each leaves other devices, dtypes and models alone.
    """
    with packed_linears(model, rows=rows), cpu_decode_attention(model), lean_decode_layers(model):
        yield


@torch.no_grad()
def generate_with_hidden_states(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    end_ids: list[int],
    pad_token_id: int,
    layer: int = -1,
    logprobs: bool = False,
    groups: list[RowGroup] | None = None,
) -> GeneratedBatch:
    """Generate one rationale per left-padded prompt and return it with ``layer``'s hidden states, in one pass.

    Equal (up to float rounding) to ``generate_rationales`` followed by ``select_hidden_states`` over
    ``[prompt | rationale]`` with the rationale mask as attention mask; the tests hold the two equal. With
    ``logprobs``, each sampled token's log-probability is kept too (what GRPO's rollouts must return). ``groups``
    decode consecutive rows with their own settings and random streams (default: one group, ``settings``).
    """
    groups = groups or [RowGroup(input_ids.shape[0], settings)]
    if sum(group.rows for group in groups) != input_ids.shape[0]:
        raise ValueError(f"Row groups cover {sum(g.rows for g in groups)} rows; the batch has {input_ids.shape[0]}.")
    with (
        seeded_sampling(settings, input_ids.device),
        DecoderOutputs(model) as captured,
        cpu_kernels(model, input_ids.shape[0]),
    ):
        chooser = _TokenChooser(groups, input_ids.device)
        return _decode(
            model, captured, input_ids, attention_mask, settings, end_ids, pad_token_id, layer, chooser, logprobs
        )


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading real tokens every row of a left-padded batch has in common (0: none, or not worth it).

    GRACE prompts all start with the same instruction prefix, often most of the prompt; its keys and values are
    the same in every row (same tokens, same positions, nothing before them), so they are computed once. At least
    one token of each row is left to prefill, and a mask that is not plain left padding shares nothing.

    >>> shared_prefix_length(torch.tensor([[0, 7, 8, 5], [7, 8, 6, 2]]), torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    2
    """
    lengths = attention_mask.sum(dim=1)
    if input_ids.shape[0] < 2 or int(lengths.min()) < 2:
        return 0
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)
    starts = input_ids.shape[1] - lengths
    if not torch.equal(attention_mask.bool(), columns[None, :] >= starts[:, None]):
        return 0
    shortest = int(lengths.min())
    aligned = input_ids.gather(1, starts[:, None] + columns[None, :shortest])  # (B, shortest) real tokens
    differs = (aligned != aligned[:1]).any(dim=0).nonzero()
    common = int(differs[0]) if differs.numel() else shortest
    return min(common, shortest - 1)


def prefill_prefix(
    captured: DecoderOutputs, prefix_ids: torch.Tensor, cache: DynamicCache, layer: int
) -> torch.Tensor:
    """Run one row's ``(1, S)`` prefix through the decoder into ``cache``; returns its ``(S, H)`` hidden states."""
    captured.decoder(input_ids=prefix_ids, cache=cache, use_cache=True, output_hidden_states=layer != -1)
    return captured.layer(layer)[0]


def _prefill_shared(
    model: Any,
    captured: DecoderOutputs,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    shared: int,
    cache: DynamicCache,
    common: dict[str, Any],
    layer: int,
    prefix_hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefill the shared prefix once, copy its cache to every row, then prefill each row's rest.

    The cache is laid out ``[prefix | padding | rest]`` (padding masked, positions counted over real tokens only,
    so each row sees what it would see alone). Returns the last logits, the prompt's hidden states in the
    caller's ``[padding | prefix | rest]`` layout, the attention mask and the positions of the cache's columns.
    ``prefix_hidden``: the prefix is already in ``cache`` (one row, from :func:`prefill_prefix`); these are its states.
    """
    batch, width = input_ids.shape
    lengths = attention_mask.sum(dim=1)
    if prefix_hidden is None:
        first = width - int(lengths[0])
        prefix_hidden = prefill_prefix(captured, input_ids[:1, first : first + shared], cache, layer)
    cache.batch_repeat_interleave(batch)
    rest_lengths = lengths - shared
    rest = int(rest_lengths.max())
    rest_mask = (torch.arange(rest, device=input_ids.device)[None, :] >= (rest - rest_lengths)[:, None]).long()
    mask = torch.cat([attention_mask.new_ones((batch, shared)), rest_mask.to(attention_mask.dtype)], dim=1)
    positions = position_ids_from_mask(mask)
    out = model(
        input_ids=input_ids[:, width - rest :],
        attention_mask=mask,
        position_ids=positions[:, shared:],
        cache=cache,
        **common,
    )
    rest_hidden = captured.layer(layer)  # (B, R, H)
    hidden = rest_hidden.new_zeros((batch, width, rest_hidden.shape[-1]))
    hidden[:, width - rest :] = rest_hidden
    for row, start in enumerate((width - lengths).tolist()):
        hidden[row, start : start + shared] = prefix_hidden
    return out.logits[:, -1].to(dtype=torch.float32), hidden, mask, positions


def forward_options(model: Any, layer: int) -> dict[str, Any]:
    """Keyword arguments of every causal-LM call of the loop: cache on, LM head on the last position only."""
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    return {"use_cache": True, "output_hidden_states": layer != -1, **keep_last}


def prefill(
    model: Any,
    captured: DecoderOutputs,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cache: DynamicCache,
    common: dict[str, Any],
    layer: int,
    prefix: tuple[int, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the prompts into ``cache`` (the shared instruction prefix once where there is one).

    Returns the last position's fp32 logits, the prompt's hidden states ``(B, P, H)``, the attention mask over the
    cache's columns and the positions of those columns. ``prefix``: ``(length, hidden states)`` of a prefix every
    row starts with, already in ``cache`` as one row (a refilled decode computes it once for all its groups).
    """
    if prefix is not None:
        shared, hidden = prefix
        return _prefill_shared(model, captured, input_ids, attention_mask, shared, cache, common, layer, hidden)
    shared = shared_prefix_length(input_ids, attention_mask)
    if shared:
        return _prefill_shared(model, captured, input_ids, attention_mask, shared, cache, common, layer)
    mask, positions = attention_mask, position_ids_from_mask(attention_mask)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, **common)
    return out.logits[:, -1].to(dtype=torch.float32), captured.layer(layer), mask, positions


def _decode(
    model: Any,
    captured: DecoderOutputs,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    end_ids: list[int],
    pad_token_id: int,
    layer: int,
    choose: _TokenChooser,
    logprobs: bool = False,
) -> GeneratedBatch:
    batch, steps, device = input_ids.shape[0], settings.max_new_tokens, input_ids.device
    common = forward_options(model, layer)
    cache = decode_cache(model.config, capacity=input_ids.shape[1] + steps)
    logits, prompt_hidden, mask, positions = prefill(model, captured, input_ids, attention_mask, cache, common, layer)
    generated = torch.full((batch, steps), pad_token_id, dtype=torch.long, device=device)
    gen_hidden = prompt_hidden.new_zeros((batch, steps, prompt_hidden.shape[-1]))
    token_logprobs = torch.zeros((batch, steps), device=device) if logprobs else None
    ends = torch.tensor(end_ids, device=device)
    rows = torch.arange(batch, device=device)  # original index of each row still in the batch
    next_position = positions[:, -1] + 1
    used = 0
    for step in range(steps):
        tokens = choose(logits, rows)
        generated[rows, step], used = tokens, step + 1
        if token_logprobs is not None:
            token_logprobs[rows, step] = choose.logprobs(logits, tokens, rows)
        finished = torch.isin(tokens, ends) if step + 1 < steps else torch.ones_like(tokens, dtype=torch.bool)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        step_inputs = dict(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None])
        if bool(finished.all()):  # no next token to choose: the decoder alone gives the last hidden states
            captured.decoder(**step_inputs, cache=cache, use_cache=True, output_hidden_states=layer != -1)
        else:
            logits = model(**step_inputs, cache=cache, **common).logits[:, -1].to(dtype=torch.float32)
        gen_hidden[rows, step] = captured.layer(layer)[:, -1]
        if bool(finished.any()):
            if bool(finished.all()):
                break
            keep = compaction_order(finished)
            rows, mask, next_position, logits = rows[keep], mask[keep], next_position[keep], logits[keep]
            cache.batch_select_indices(keep)
        next_position = next_position + 1
    hidden = torch.cat([prompt_hidden, gen_hidden[:, :used]], dim=1)
    kept = None if token_logprobs is None else token_logprobs[:, :used]
    return GeneratedBatch(rationale_ids=generated[:, :used], hidden=hidden, logprobs=kept)
