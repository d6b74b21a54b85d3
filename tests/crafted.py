"""Crafted files for the tests that prove nothing foreign runs: an object whose unpickling writes a marker file."""

from __future__ import annotations

from pathlib import Path

PAYLOAD_TEXT = "the payload ran"


class Payload:
    """What a crafted file carries: unpickling it calls Path.write_text(marker, PAYLOAD_TEXT), a function of the
    attacker's choosing; the tests assert the marker never appears (and that plain unpickling does write it)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, PAYLOAD_TEXT))
