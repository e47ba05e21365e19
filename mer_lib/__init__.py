"""mer_lib: the tested helper library behind the audio-visual emotion recognition course.

Stages, each a subpackage with one job (arrows point one way):
data -> features -> models/train -> analysis -> plots. The `mer` command (mer_lib.cli) and the
notebooks sit on top.
"""
__version__ = "0.1.0"
