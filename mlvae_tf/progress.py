"""Progress of long work: Keras's bar on a terminal, one plain line per step elsewhere.

Keras's `Progbar` redraws one line with carriage returns and colour codes whenever the platform
is POSIX, which a log file or a pipe shows as a single garbled line. `progress_bar` keeps the bar
for terminals and writes `trial 2/5` (with its values) as a line of its own otherwise.
"""

import sys

__all__ = ["progress_bar", "Lines"]


class Lines:
    """`Progbar`'s `update` / `add`, one line per call: `"<unit> <current>/<total>[ - name: value ...]"`,
    each value the mean over the steps so far, as `Progbar` shows it."""

    def __init__(self, target, unit_name="step", stream=None):
        self.target, self.unit_name, self.stream, self.current = target, unit_name, stream, 0
        self._sums = {}

    def update(self, current, values=None):
        steps, self.current = current - self.current, current
        for name, value in values or ():
            total, count = self._sums.get(name, (0.0, 0))
            self._sums[name] = (total + value * steps, count + steps)
        details = "".join(f" - {name}: {total / max(count, 1):.4g}" for name, (total, count) in self._sums.items())
        print(f"{self.unit_name} {current}/{self.target}{details}", file=self.stream or sys.stdout, flush=True)

    def add(self, n, values=None):
        self.update(self.current + n, values)


def progress_bar(target, unit_name="step"):
    """Keras's `Progbar` where stdout is a terminal, else `Lines`."""
    if sys.stdout.isatty():
        import keras

        return keras.utils.Progbar(target, unit_name=unit_name)
    return Lines(target, unit_name)
