"""What a study's trials are scored with besides the loss: the objective's weights as this run
applies them, the CLIP and DINO models, and their embeddings of the reference images (the
held-out ones), made once per study process and reused by every trial (issue 21)."""

from __future__ import annotations

from lrfind.errors import LrfindError
from lrfind.scoring.clip import scorer_for
from lrfind.scoring.dino import load_dino_scorer
from lrfind.scoring.prompts import validation_prompts
from lrfind.scoring.samples import clip_i_references, load_reference_images
from lrfind.study.config import StudyConfig
from lrfind.study.scoring import ObjectiveWeights


def objective_weights(cfg: StudyConfig, space):
    """The space's [objective] weights; without --dino its dino weight is 0, with --score loss also CLIP's."""
    weights = ObjectiveWeights(**space.objective.model_dump())
    weights = weights if cfg.dino is not None else weights.without_dino()
    return weights.loss_only() if cfg.score == "loss" else weights


def check_same_dino(cfg: StudyConfig, study) -> None:
    """A study resumed with --dino added or dropped would rank trials scored with and without the
    DINO term against each other: refused in one line (a study from before --dino records nothing)."""
    if "dino_model" not in study.user_attrs or not study.get_trials(deepcopy=False):
        return
    before = study.user_attrs["dino_model"]
    if (before is None) != (cfg.dino is None):
        was = f"with --dino ({before})" if before is not None else "without --dino"
        raise LrfindError(f"study {cfg.name} was run {was}; its trials' values "
                          f"{'include' if before is not None else 'lack'} the DINO term. Rerun it the same way, "
                          "or start a new study with another --name")


def dino_scorer(cfg: StudyConfig, weights):
    """The --dino model when its weight counts; a note when --dino is given but has no effect."""
    if cfg.dino is None:
        return None, None
    if weights.dino == 0:
        why = "--score loss draws no samples" if cfg.score == "loss" else "the space's [objective] dino weight is 0"
        return None, f"--dino {cfg.dino} is not used: {why}"
    return load_dino_scorer(cfg.dino, allow_pickle=cfg.model.allow_pickle), None


def clip_scorer(cfg: StudyConfig, weights, components):
    """A CLIP scorer, or None for loss-only scoring: tiny random CLIP for the tiny model."""
    if not weights.uses_clip:
        return None
    scorer = scorer_for(components, cfg.clip, allow_pickle=cfg.model.allow_pickle)
    if scorer is not None:
        return scorer
    raise LrfindError("CLIP scoring needs a CLIP model: pass --clip PATH (a local transformers CLIP folder, e.g. "
                      "openai/clip-vit-large-patch14 downloaded beforehand), or --score loss for validation loss only")


def embed_references(ctx, study, held, dataset) -> None:
    """The prompts every trial samples, and CLIP's and DINO's embeddings of the reference images
    (the held-out ones): made once per study process, reused by every trial."""
    ctx.prompts = validation_prompts(dataset)
    reference = clip_i_references(held.records, held.train_dataset)
    images = load_reference_images(reference.records)
    ctx.clip_i_reference = reference.source
    ctx.warnings += (reference.note,) if reference.note else ()
    study.set_user_attr("clip_i_reference", reference.source)
    if ctx.scorer is not None:
        ctx.clip_i_images = ctx.scorer.image_embeddings(images)
        ctx.prompt_embeddings = ctx.scorer.text_embeddings([prompt for prompt, _ in ctx.prompts])
    if ctx.dino_scorer is not None:
        ctx.dino_images = ctx.dino_scorer.image_embeddings(images)
