"""The final run's outputs: X/Y grid of epochs x LoRA weights, suggested epoch."""
