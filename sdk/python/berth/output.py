"""The progress lines `create()` and `deploy()` print, as the CLI prints them. In a terminal a
changing status (layers pulled) is redrawn in place; piped, each step is one line."""

import sys


class Output:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._status = ""
        self._drawn = False

    def line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """A line that replaces the previous status line."""
        if text == self._status:
            return
        self._status = text
        if self.live:
            self.stream.write("\r\033[K   " + text)
            self.stream.flush()
            self._drawn = True
        else:
            print("   " + text, file=self.stream, flush=True)

    def end_status(self) -> None:
        """The step is over: a live status line is wiped, a piped one already ended."""
        self._clear()
        self._status = ""

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
