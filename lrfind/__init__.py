"""lrfind: find the learning rate and LoRA hyperparameters for Stable Diffusion LoRA training."""

__version__ = "0.1.0"
