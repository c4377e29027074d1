"""Prompt -> SDXL text conditioning, as kohya's sdxl_train_network.py computes it.

kohya's train_util.get_hidden_states_sdxl: the penultimate hidden states of both encoders
(`hidden_states[-2]`, no final layer norm; kohya indexes CLIP ViT-L's as [11], the same layer of
its 12), concatenated along the width, and the pooled output of the second encoder: its final
(layer-normed) state at the first <EOS>, through `text_projection` (kohya's pool_workaround; the
same vector as CLIPTextModelWithProjection's `text_embeds` and diffusers' `encode_prompt` with
clip_skip None). kohya ignores --clip_skip for SDXL ("clip_skip will be unexpected"); lrfind
refuses it (validate_sdxl_text_options).

Long prompts (--max_token_length 150 / 225) are cut into 75-token chunks as for SD 1.x; the
second tokenizer pads with "!", so each chunk's last token is fixed up as kohya's get_input_ids
does (`x <PAD>` at the end becomes `x <EOS>`, `<BOS> <PAD>` at the start becomes `<BOS> <EOS>`);
the pooled output is the first chunk's.
"""

from __future__ import annotations

from lrfind.errors import ConfigError
from lrfind.models.text_encoding import MAX_TOKEN_LENGTHS, join_chunk_states, tokenize_prompts


def validate_sdxl_text_options(clip_skip: int, max_token_length: int) -> None:
    if clip_skip != 1:
        raise ConfigError(f"clip_skip {clip_skip}: SDXL always uses the penultimate layer of both text encoders "
                          "(kohya ignores --clip_skip for SDXL); drop --clip-skip")
    if max_token_length not in MAX_TOKEN_LENGTHS:
        raise ConfigError(f"max_token_length {max_token_length} must be one of 75, 150, 225 (kohya's choices)")


def tokenize_prompts_padded(tokenizer, prompts: list[str], max_token_length: int = 75):
    """Token ids [B, n_chunks, 77] for a tokenizer whose pad is not <EOS> (SDXL's tokenizer_2)."""
    chunks = tokenize_prompts(tokenizer, prompts, max_token_length)
    if chunks.shape[1] == 1:
        return chunks
    chunks = chunks.clone()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ends_in_text = (chunks[..., -2] != eos) & (chunks[..., -2] != pad)
    chunks[..., -1][ends_in_text] = eos
    starts_with_pad = chunks[..., 1] == pad
    chunks[..., 1][starts_with_pad] = eos
    return chunks


def _pooled(text_encoder_2, last_hidden_state, input_ids, eos_token_id: int):
    """kohya's pool_workaround: the state at the first <EOS> of each row, projected."""
    import torch

    eos_index = torch.argmax((input_ids == eos_token_id).int(), dim=1)
    rows = torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device)
    return text_encoder_2.text_projection(last_hidden_state[rows, eos_index.to(last_hidden_state.device)])


def encode_prompts_sdxl(components, prompts: list[str], max_token_length: int = 75, grad: bool | None = None):
    """(hidden states [B, max_token_length + 2, D1 + D2], pooled [B, P]) of `prompts`, kohya-style.

    grad=None: gradients flow exactly when an encoder has trainable parameters (a text-encoder LoRA).
    """
    import torch

    encoder_1, encoder_2 = components.text_encoder, components.text_encoder_2
    if grad is None:
        grad = any(p.requires_grad for module in (encoder_1, encoder_2) for p in module.parameters())
    ids_1 = tokenize_prompts(components.tokenizer, list(prompts), max_token_length)
    ids_2 = tokenize_prompts_padded(components.tokenizer_2, list(prompts), max_token_length)
    batch, n_chunks, chunk_len = ids_1.shape
    flat_1 = ids_1.reshape(batch * n_chunks, chunk_len).to(encoder_1.device)
    flat_2 = ids_2.reshape(batch * n_chunks, chunk_len).to(encoder_2.device)
    with torch.set_grad_enabled(grad):
        out_1 = encoder_1(flat_1, output_hidden_states=True, return_dict=True)
        out_2 = encoder_2(flat_2, output_hidden_states=True, return_dict=True)
        states_1 = join_chunk_states(out_1.hidden_states[-2], batch, n_chunks)
        states_2 = join_chunk_states(out_2.hidden_states[-2], batch, n_chunks)
        pooled = _pooled(encoder_2, out_2.last_hidden_state, flat_2, components.tokenizer_2.eos_token_id)
        hidden = torch.cat([states_1, states_2.to(states_1.device)], dim=2)
    return hidden, pooled[::n_chunks]
