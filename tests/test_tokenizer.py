"""The offline-built CLIP tokenizer tokenizes like open_clip's reference tokenizer.

open_clip cannot be imported here (its package import needs torchvision), so its tokenizer.py is
loaded by file path: it imports only gzip/html/ftfy/regex/numpy/torch. Two documented differences:
- padding: open_clip pads with 0, SD 1.x (and kohya) pad with <|endoftext|> = 49407;
- HTML entities: open_clip always unescapes them (html.unescape twice); the SD tokenizer runs
  ftfy.fix_text, which leaves them alone when the text contains '<' (it may be HTML), e.g. in
  A1111-style `<lora:name:1>` prompts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BOS, EOS = 49406, 49407

# Real prompts: kohya-style tag captions, A1111 weights, unicode, punctuation, long prompts.
PROMPTS = [
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, blue eyes",
    "(masterpiece:1.2), [blurry], {detailed}, ((sharp focus)), (red dress:0.8)",
    "a photo of sks dog in a bucket",
    "photo of an astronaut riding a horse on mars, 4k, artstation, trending",
    "Café naïve résumé — “curly quotes” ‘single’",
    "東京タワー の 写真, 猫, 美しい",
    "emoji 🐱🚀 test",
    "tom & jerry, tom &amp; jerry",
    "AT&T 3.14 1,000,000 #hashtag @user 50% off!!!",
    "  lots   of\twhitespace\n newline  ",
    "don't can't I'm we're they've you'll he'd",
    "UPPER lower MiXeD CamelCase",
    "a_b-c/d\\e|f~g^h",
    "ﬁne ｆｕｌｌｗｉｄｔｈ ligatures",
    "",
    "x" * 300,
    ", ".join(["a very detailed photo of an astronaut"] * 20),  # > 77 tokens: truncation
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None and spec.submodule_search_locations, "open-clip-torch (--no-deps) is not installed"
    path = Path(spec.submodule_search_locations[0]) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_tokenizer_by_path", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


@pytest.fixture(scope="module")
def clip_tokenizer():
    from lrfind.models.tokenizer import get_clip_tokenizer

    return get_clip_tokenizer()


def sd_ids(tokenizer, prompt: str) -> list[int]:
    from lrfind.models.tokenizer import clean_prompt

    return tokenizer(clean_prompt(prompt), padding="max_length", truncation=True, max_length=77).input_ids


def open_clip_ids_padded_like_sd(reference, prompt: str) -> list[int]:
    ids = reference([prompt])[0].tolist()
    end = ids.index(EOS)
    assert all(token == 0 for token in ids[end + 1 :])  # open_clip pads with 0 ...
    return ids[: end + 1] + [EOS] * (len(ids) - end - 1)  # ... SD pads with <|endoftext|>


@pytest.mark.parametrize("prompt", PROMPTS, ids=lambda p: repr(p[:24]))
def test_token_ids_match_open_clip(prompt, clip_tokenizer, open_clip_tokenizer):
    ours = sd_ids(clip_tokenizer, prompt)
    assert len(ours) == 77 and ours[0] == BOS and ours[-1] == EOS
    assert ours == open_clip_ids_padded_like_sd(open_clip_tokenizer, prompt)


def test_vocabulary_size_and_special_tokens(clip_tokenizer, open_clip_tokenizer):
    assert len(clip_tokenizer) == open_clip_tokenizer.vocab_size == 49408
    assert clip_tokenizer.bos_token_id == open_clip_tokenizer.sot_token_id == BOS
    assert clip_tokenizer.eos_token_id == open_clip_tokenizer.eot_token_id == EOS
    assert clip_tokenizer.pad_token_id == EOS  # SD 1.x pads with <|endoftext|>
    assert clip_tokenizer.model_max_length == 77


def test_html_entities_next_to_angle_brackets_are_the_known_difference(clip_tokenizer, open_clip_tokenizer):
    prompt = "<lora:style:0.8> tom &amp; jerry"
    ours = sd_ids(clip_tokenizer, prompt)
    reference = open_clip_ids_padded_like_sd(open_clip_tokenizer, prompt)
    assert ours != reference
    # The same text with the entity already unescaped tokenizes identically.
    assert sd_ids(clip_tokenizer, "<lora:style:0.8> tom & jerry") == reference


def test_count_tokens_excludes_special_tokens_and_does_not_truncate(open_clip_tokenizer):
    from lrfind.models.tokenizer import count_tokens

    assert count_tokens("") == 0
    assert count_tokens("a photo of a cat") == 5
    long_prompt = PROMPTS[-1]
    assert count_tokens(long_prompt) == len(open_clip_tokenizer.encode(long_prompt)) > 75
    assert count_tokens("“curly”") == count_tokens('"curly"')  # ftfy repair, as kohya's tokenizer
