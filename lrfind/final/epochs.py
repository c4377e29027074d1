"""What a final run records per epoch: validation loss, samples from fixed prompts, CLIP-I.

`EpochWatch` is a training-loop callback. At each epoch end it records the deterministic
validation loss; every `sample_every_n_epochs` (and at the last epoch) it also draws one image per
sample prompt with the LoRA as trained so far (it is live in the model: nothing is merged) and,
with a CLIP scorer, their CLIP-I against the training images. The records are rewritten to
`OUTPUT_DIR/NAME_epochs.json` after each epoch, so a resumed run still knows the epochs before it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from lrfind.atomic import write_json
from lrfind.errors import ConfigError
from lrfind.jsonfiles import finite
from lrfind.network import generate_images
from lrfind.scoring.prompts import FIRST_SEED, validation_prompts  # the same seeds as a study's prompts
from lrfind.scoring.samples import clip_i_matrix, save_png

# The records' row for "before the first step": the base model's held-out loss (a fresh LoRA changes
# nothing), the line the report's final-run curve is judged against. No LoRA file has epoch 0.
BASE_RECORD = 0
_SEED_OPTION = re.compile(r"\s--d\s+(-?\d+)")


def read_sample_prompts(path: Path) -> list[tuple[str, int]]:
    """kohya-style prompt file: one prompt a line, `# comments`, an optional `--d SEED` per line.

    Other kohya per-line options (--n negative, --s steps, --l scale, --w/--h size) are dropped
    from the prompt text; lrfind samples at the run's resolution with sample_steps.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the sample prompts ({err}); give a UTF-8 text file, "
                          "one prompt a line") from None
    prompts = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        seed_match = _SEED_OPTION.search(" " + line)
        seed = int(seed_match.group(1)) if seed_match else FIRST_SEED + len(prompts)
        text = re.split(r"\s--[a-z]\s", " " + line, maxsplit=1)[0].strip()
        if text:
            prompts.append((text, seed))
    if not prompts:
        raise ConfigError(f"{path}: no prompt in the file; write one prompt a line")
    return prompts


def sample_prompts_for(config, dataset) -> list[tuple[str, int]]:
    if config.sample_prompts is not None:
        return read_sample_prompts(config.sample_prompts)
    return validation_prompts(dataset)


def records_path(config) -> Path:
    return Path(config.output_dir) / f"{config.output_name}_epochs.json"


def read_records(config, up_to_epoch: int) -> dict[int, dict]:
    """Records an interrupted run wrote, for the epochs the resumed state has done."""
    try:
        rows = json.loads(records_path(config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {int(r["epoch"]): r for r in rows if isinstance(r, dict) and int(r.get("epoch", 0)) <= up_to_epoch}


class EpochWatch:
    """Loop callback: per-epoch validation loss, and samples (+ CLIP-I) every n epochs."""

    def __init__(self, config, components, prompts, scorer=None, reference=None,
                 last_epoch: int = 0, records: Optional[dict] = None, drift=None, base_loss=None):
        self.config, self.components, self.prompts = config, components, prompts
        self.base_loss = base_loss  # () -> the validation loss now, before the first step; or None
        self.drift = drift  # () -> the LoRA's drift now (lrfind.scoring.drift.measure_drift), or None
        self.scorer, self.reference = scorer, reference  # reference: training-image embeddings
        self.every, self.last_epoch = config.sample_every_n_epochs, last_epoch
        self.records: dict[int, dict] = dict(records or {})

    def sampled(self, epoch: int) -> bool:
        return bool(self.every) and (epoch % self.every == 0 or epoch == self.last_epoch)

    def on_train_start(self, state) -> None:
        if self.base_loss is not None and state.step == 0:
            self.records[BASE_RECORD] = {"epoch": BASE_RECORD, "step": 0, "val_loss": finite(self.base_loss())}

    def on_epoch_end(self, state) -> None:
        row = {"epoch": state.epoch, "step": state.step, "val_loss": finite(state.val_loss),
               "train_loss": finite(state.average_loss), "clip_i": None, "drift": finite(self.drift()) if self.drift is not None else None, "samples": []}
        if self.sampled(state.epoch):
            row.update(self._samples(state.epoch))
        self.records[state.epoch] = row
        write_json(records_path(self.config), [self.records[e] for e in sorted(self.records)])

    def _samples(self, epoch: int) -> dict:
        import torch

        # every network the samples run through (SDXL's second text encoder too), back as they were after
        modules = [m for m in self.components.modules().values() if m is not None]
        modes = [m.training for m in modules]
        for module in modules:
            module.eval()
        try:
            images = generate_images(self.components, [p for p, _ in self.prompts], [s for _, s in self.prompts],
                                     width=self.config.dataset.resolution, height=self.config.dataset.resolution,
                                     steps=self.config.sample_steps, clip_skip=self.config.model.clip_skip,
                                     max_token_length=self.config.model.max_token_length)
        finally:
            for module, mode in zip(modules, modes):
                module.train(mode)
        folder = Path(self.config.output_dir) / "sample"
        paths = [save_png(image, folder / f"{self.config.output_name}_e{epoch:06d}_{i:02d}.png",
                          {"prompt": prompt, "seed": str(seed)})
                 for i, (image, (prompt, seed)) in enumerate(zip(images, self.prompts))]
        clip_i = None
        if self.scorer is not None:
            with torch.no_grad():
                clip_i = float(clip_i_matrix(self.scorer.image_embeddings(images), self.reference).mean())
        return {"clip_i": clip_i, "samples": [p.name for p in paths]}

