"""mer_lib: the tested helper library behind the audio-visual emotion recognition course.

Layers, each importing only itself and the layers below (tests/test_layers.py checks it):
base (errors, paths, artifacts, remote: download and hashing, parallel, media, weights) -> data ->
features -> models (registry, baseline ladder) -> train (config, dimensional) -> analysis (and ensemble)
-> plots. The `mer` command (mer_lib.cli), the notebooks' helpers (course, notebooks), report,
predict, protocol and bench sit on top.
"""
__version__ = "0.1.0"
