"""Stable Diffusion components: the built-in tiny model and offline loading of real ones."""
