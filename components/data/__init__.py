"""The demo world: its file layout, its generator, and its DVC versioning."""
