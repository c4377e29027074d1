"""Scoring a LoRA by its samples: validation prompts, sample images, CLIP-I and CLIP-T.

Used by the study's trials and the final run alike (above training, below probe/study/final).
Importing this package does not import torch; the functions do, when called.
"""
