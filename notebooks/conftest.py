"""nbval (`pytest --nbval-lax notebooks/`) runs each notebook in a kernel that inherits this environment.

nbval reads a cell's output messages only after the cell has finished, and the kernel's IOPub socket
drops messages beyond its high-water mark (1000). A training cell whose progress bars redraw ten times
a second (tqdm's default) sends more than that in two minutes, loses its closing "idle" message, and
nbval fails it with "Timeout of 5 seconds exceeded waiting for output". Bars that redraw at most every
five seconds (and an epoch postfix that waits for the next redraw, mer_lib.train.train_fold) keep a
cell far below the mark; the notebooks' results do not change.
"""
import os

os.environ.setdefault("TQDM_MININTERVAL", "5")
