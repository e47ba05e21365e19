"""Look inside a run while it decides, window by window: the explorer widget of notebook 08.

`Explorer` holds a recording's timeline computed with details (mer_lib.timeline: every window's
embeddings, masks, face chip and log-mel patch) and a `State`: the step (a block of T windows), the
window within it, and the switches of notebook 05 applied live to the block before the fold models
see it: k windows of unit-norm Gaussian noise in audio, video or both (`noise.inject_noise`, drawn
with a fixed seed) and a dropped modality (`noise.drop_modality`: the late fusion then answers from
the other). `view()` gathers what to show: the window's face chip and log-mel patch, each encoder's
attention row for that window (its last layer, averaged over heads and fold models: how much the
window attends to each window of the block), and the per-modality and fused probabilities with and
without the switches. `widget()` wraps it in ipywidgets; all the logic is here, so it is tested
without a browser (the state and view after a control changes).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mer_lib.analysis import noise
from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.models.mater import LateFusion
from mer_lib.stream import RunModels, window_key
from mer_lib.timeline import Timeline, predict_timeline

NOISE_CHOICES = {"none": "none", "a": "audio", "v": "video", "av": "audio and video"}
MISSING_CHOICES = {"none": "none", "a": "audio", "v": "video"}


@dataclass(frozen=True)
class State:
    """Where the explorer looks: step, window (0-based), noise in which modalities and how many
    noisy windows, which modality is dropped, and the noise draw's seed."""

    step: int = 0
    window: int = 0
    noise: str = "none"
    noisy: int = 1
    missing: str = "none"
    seed: int = 0


@dataclass
class View:
    """What the explorer shows for its state (see the module docstring)."""

    state: State
    start: float  # the window's start and end (s)
    end: float
    chip: np.ndarray | None  # the face chip nearest the window's middle, None without a face
    patch: np.ndarray | None  # the window's log-mel patch (frames, 64), None without audio
    attention: dict[str, np.ndarray]  # modality -> (T,) attention of the window to each window of the block
    probabilities: dict[str, np.ndarray]  # "fused", "a", "v" -> (C,) with the switches
    clean: dict[str, np.ndarray]  # the same without them
    present: dict[str, np.ndarray]  # modality -> (T,) window mask with the switches


class Explorer:
    """A run and one recording's detailed timeline, looked at one step and window at a time."""

    def __init__(self, timeline: Timeline, run: RunModels):
        if not timeline.windows:
            raise MerError("the explorer needs a timeline computed with details=True")
        if not timeline.results:
            raise MerError(f"{timeline.source} is shorter than one step: nothing to explore")
        self.timeline, self.run, self.state, self.controls = timeline, run, State(), {}

    @classmethod
    def from_recording(cls, source: str | Path, run_dir: str | Path, hop: float | None = None,
                       folds: list[int] | None = None) -> Explorer:
        """An explorer over `source` under the run's fold models (`folds`: some of them)."""
        run = RunModels(run_dir, folds)
        return cls(predict_timeline(source, run, hop, details=True), run)

    @property
    def modalities(self) -> str:
        """The run's modalities that the recording has."""
        return self.timeline.present

    def set(self, **changes) -> View:
        """Change the state (State's fields) and return the new view; MerError for values out of range."""
        state = replace(self.state, **changes)
        count, steps = self.run.count, len(self.timeline.results)
        checks = [(0 <= state.step < steps, f"step {state.step} (0..{steps - 1})"),
                  (0 <= state.window < count, f"window {state.window} (0..{count - 1})"),
                  (state.noise == "none" or set(state.noise) <= set(self.modalities), f"noise in {state.noise!r}"),
                  (1 <= state.noisy <= count, f"{state.noisy} noisy windows (1..{count})"),
                  (state.missing == "none" or state.missing in self.modalities, f"missing {state.missing!r}")]
        bad = [what for ok, what in checks if not ok]
        if bad:
            raise MerError(f"the explorer cannot show {bad[0]} for this run and recording")
        self.state = state
        return self.view()

    def block(self, step: int) -> ClipData:
        """The clean windows of a step as the fold models take them."""
        keys = [window_key(s) for s in self.timeline.steps.starts(self.timeline.results[step].index)]
        rows = [self.timeline.windows[key] for key in keys]
        return self.run.block({m: (np.stack([r[m]["x"] for r in rows]), np.array([r[m]["mask"] for r in rows]))
                               for m in self.modalities})

    def switched(self, data: ClipData) -> ClipData:
        """`data` with the state's noise and dropped modality applied (notebook 05's experiments)."""
        if self.state.noise != "none":
            generator = torch.Generator().manual_seed(self.state.seed)
            data = noise.inject_noise(data, self.state.noise, self.state.noisy, generator)
        return noise.drop_modality(data, self.state.missing) if self.state.missing != "none" else data

    def view(self) -> View:
        """What to show for the current state."""
        step, t = self.timeline.results[self.state.step], self.state.window
        start = float(self.timeline.steps.starts(step.index)[t])
        row = self.timeline.windows[window_key(start)]
        clean = self.block(self.state.step)
        data = self.switched(clean)
        return View(self.state, start, start + self.run.window, row.get("v", {}).get("chip"),
                    row.get("a", {}).get("patch"), self.attention(data, t), _heads(*self.run.probabilities(data)),
                    _heads(*self.run.probabilities(clean)),
                    {m: getattr(data, f"{MODALITY_NAMES[m]}_mask")[0].numpy() for m in self.modalities})

    @torch.no_grad()
    def attention(self, data: ClipData, window: int) -> dict[str, np.ndarray]:
        """Per modality the (T,) last-layer attention row of `window`, mean over heads and fold models
        (empty for models without self-attention, such as the baseline without MHSA)."""
        rows: dict[str, list[np.ndarray]] = {}
        for model in self.run.models:
            if not isinstance(model.model, LateFusion):
                continue
            for m, layers in model(**data.inputs(), return_internals=True).attention.items():
                if layers and m in self.modalities:
                    rows.setdefault(m, []).append(layers[-1][0].mean(0)[window].numpy())
        return {m: np.mean(found, axis=0) for m, found in rows.items()}

    def figure(self):
        """The current view as a figure (mer_lib.plots.explorer_view)."""
        from mer_lib import plots

        return plots.explorer_view(self.view(), self.run.classes, self.run.window)

    def widget(self):
        """Sliders for the step and window, dropdowns for noise and a missing modality, and the figure,
        redrawn on every change; `controls` keeps the controls by State field name."""
        import ipywidgets as w

        available = [m for m in ("a", "v", "av") if set(m) <= set(self.modalities)]
        self.controls = {
            "step": w.IntSlider(self.state.step, 0, len(self.timeline.results) - 1, description="step"),
            "window": w.IntSlider(self.state.window, 0, self.run.count - 1, description="window"),
            "noise": w.Dropdown(options=[(NOISE_CHOICES[m], m) for m in ["none", *available]], value=self.state.noise,
                                description="noise in"),
            "noisy": w.IntSlider(self.state.noisy, 1, self.run.count, description="noisy windows"),
            "missing": w.Dropdown(options=[(MISSING_CHOICES[m], m) for m in ["none", *self.modalities]],
                                  value=self.state.missing, description="drop"),
        }
        shown = w.Output()
        for control in self.controls.values():
            control.continuous_update = False
            control.observe(lambda _: self._redraw(shown), names="value")
        self._redraw(shown)
        return w.VBox([w.HBox([self.controls["step"], self.controls["window"]]),
                       w.HBox([self.controls["noise"], self.controls["noisy"], self.controls["missing"]]), shown])

    def _redraw(self, shown) -> None:
        """Take the controls' values into the state and draw the view into the output area."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.set(**{name: control.value for name, control in self.controls.items()})
        with shown:
            shown.clear_output(wait=True)
            figure = self.figure()
            display(figure)
            plt.close(figure)


def _heads(fused: np.ndarray, by_modality: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"fused": fused} | by_modality
