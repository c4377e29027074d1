"""Shared fixtures. Tests run in one process: the tiny model and the tokenizer load once."""

from __future__ import annotations

import os

# Before any import of huggingface libraries: nothing may be fetched from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Keep the tokenizer files and feature caches of the tests out of the user's home."""
    path = tmp_path_factory.mktemp("lrfind-cache")
    old = os.environ.get("LRFIND_CACHE_DIR")
    os.environ["LRFIND_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LRFIND_CACHE_DIR", None)
    else:
        os.environ["LRFIND_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny():
    """The tiny model, seed 0. Treat as read-only: copy a component before changing it."""
    from lrfind.models.tiny import build_tiny

    return build_tiny(seed=0)


@pytest.fixture(scope="session")
def example_dataset(tmp_path_factory):
    """A copy of the shipped real-image example dataset (kohya layout). Read-only."""
    from lrfind.data.example import copy_example_dataset

    return copy_example_dataset(tmp_path_factory.mktemp("example") / "dataset")


@pytest.fixture(scope="session")
def feature_store(tmp_path_factory):
    """One latent/text cache for the whole session, as a study shares one."""
    from lrfind.cache import TensorStore

    return TensorStore(tmp_path_factory.mktemp("features"))
