"""Prompt -> text-encoder hidden states, as kohya sd-scripts computes them for SD 1.x.

Long prompts (kohya's --max_token_length 150 / 225): the caption is tokenized to
max_token_length + 2 tokens, cut into chunks of 75 tokens, each wrapped as <BOS> chunk <EOS> and
encoded separately (CLIP only sees 77 positions); then the chunk-inner states are concatenated
between the first <BOS> state and the last <EOS> state. The result has max_token_length + 2
positions: 77, 152 or 227 (kohya's train_util.get_input_ids and get_hidden_states, SD 1.x branch).

clip_skip = k takes the output of the k-th layer from the end and applies the final layer norm,
as kohya does; clip_skip = 1 is the plain last hidden state.
"""

from __future__ import annotations

from lrfind.errors import ConfigError
from lrfind.models.tokenizer import clean_prompt

CHUNK_TOKENS = 75  # CLIP's 77 positions minus <BOS> and <EOS>
MAX_TOKEN_LENGTHS = (75, 150, 225)


def validate_text_options(text_encoder, clip_skip: int, max_token_length: int) -> None:
    n_layers = text_encoder.config.num_hidden_layers
    if not 1 <= clip_skip <= n_layers:
        raise ConfigError(f"clip_skip {clip_skip} must be between 1 and {n_layers} (the text encoder's layers); SD 1.x anime models use 2")
    if max_token_length not in MAX_TOKEN_LENGTHS:
        raise ConfigError(f"max_token_length {max_token_length} must be one of 75, 150, 225 (kohya's choices)")


def tokenize_prompts(tokenizer, prompts: list[str], max_token_length: int = 75):
    """Token ids [B, n_chunks, 77]: each chunk is <BOS> + 75 tokens + <EOS>, padded with <EOS>."""
    total = max_token_length + 2
    prompts = [clean_prompt(prompt) for prompt in prompts]
    ids = tokenizer(prompts, padding="max_length", truncation=True, max_length=total, return_tensors="pt").input_ids
    if max_token_length == CHUNK_TOKENS:
        return ids[:, None, :]
    import torch

    chunks = [
        torch.cat([ids[:, :1], ids[:, start : start + CHUNK_TOKENS], ids[:, -1:]], dim=1)
        for start in range(1, max_token_length + 1, CHUNK_TOKENS)
    ]
    return torch.stack(chunks, dim=1)


def _final_layer_norm(text_encoder):
    # transformers >= 5.6 flattened CLIPTextModel (no .text_model level); older versions have it.
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


def encode_token_chunks(text_encoder, chunk_ids, clip_skip: int = 1):
    """Hidden states [B, max_token_length + 2, hidden] from token chunks [B, n_chunks, 77]."""
    batch, n_chunks, chunk_len = chunk_ids.shape
    flat_ids = chunk_ids.reshape(batch * n_chunks, chunk_len).to(text_encoder.device)
    if clip_skip == 1:
        states = text_encoder(flat_ids).last_hidden_state
    else:
        output = text_encoder(flat_ids, output_hidden_states=True, return_dict=True)
        states = _final_layer_norm(text_encoder)(output.hidden_states[-clip_skip])
    return join_chunk_states(states, batch, n_chunks)


def join_chunk_states(states, batch: int, n_chunks: int):
    """[B * n_chunks, 77, D] chunk states -> [B, n_chunks * 75 + 2, D]: the first <BOS> state, the
    75 inner states of every chunk, the last state (kohya's get_hidden_states and _sdxl)."""
    import torch

    chunk_len = states.shape[1]
    states = states.reshape(batch, n_chunks * chunk_len, states.shape[-1])
    if n_chunks == 1:
        return states
    pieces = [states[:, :1]]
    pieces += [states[:, start : start + CHUNK_TOKENS] for start in range(1, n_chunks * chunk_len, chunk_len)]
    pieces.append(states[:, -1:])
    return torch.cat(pieces, dim=1)


def encode_prompts(
    components,
    prompts: list[str],
    clip_skip: int = 1,
    max_token_length: int = 75,
    grad: bool | None = None,
):
    """Text-encoder states [B, max_token_length + 2, hidden] of `prompts`, kohya-style.

    grad=None: gradients flow exactly when the text encoder has trainable parameters (a text-encoder
    LoRA being trained); otherwise encoding runs under torch.no_grad.
    """
    import torch

    text_encoder = components.text_encoder
    validate_text_options(text_encoder, clip_skip, max_token_length)
    if grad is None:
        grad = any(p.requires_grad for p in text_encoder.parameters())
    chunk_ids = tokenize_prompts(components.tokenizer, list(prompts), max_token_length)
    with torch.set_grad_enabled(grad):
        return encode_token_chunks(text_encoder, chunk_ids, clip_skip)
