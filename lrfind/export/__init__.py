"""Exports for other trainers: kohya sd-scripts configs from a study's recommendation."""
