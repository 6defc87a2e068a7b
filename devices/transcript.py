"""Raw tx/rx transcript of device traffic, kept for every dispense."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from devices.clock import SYSTEM_CLOCK, Clock

Direction = Literal["tx", "rx"]


@dataclass(frozen=True)
class TranscriptEntry:
    """One chunk of bytes written to (tx) or read from (rx) a device."""

    at: datetime
    direction: Direction
    device: str
    data: bytes

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-ready dict; bytes as hex so nothing is lost or escaped."""
        return {
            "at": self.at.isoformat(),
            "dir": self.direction,
            "device": self.device,
            "hex": self.data.hex(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, str]) -> TranscriptEntry:
        """Return the entry serialised by ``to_dict``; raises ValueError if malformed."""
        direction = raw["dir"]
        if direction not in ("tx", "rx"):
            raise ValueError("direction must be tx or rx")
        at = datetime.fromisoformat(raw["at"])
        if at.tzinfo is None:
            raise ValueError("transcript times must be timezone-aware")
        return cls(at=at, direction=direction, device=raw["device"], data=bytes.fromhex(raw["hex"]))


class Transcript:
    """Append-only list of ``TranscriptEntry``; safe to append from several threads.

    Iterates and indexes like a list of entries; ``to_list``/``to_json`` give the
    JSON form (hex bytes, ISO times).
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._entries: list[TranscriptEntry] = []
        self._lock = threading.Lock()

    def record(self, direction: Direction, device: str, data: bytes) -> None:
        if not data:
            return
        entry = TranscriptEntry(self._clock.now(), direction, device, bytes(data))
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[TranscriptEntry]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[TranscriptEntry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> TranscriptEntry:
        with self._lock:
            return self._entries[index]

    def merged(self) -> list[tuple[Direction, bytes]]:
        """Return (direction, bytes) with consecutive same-direction chunks joined.

        How a reply is split into reads depends on the OS; the joined view does not.
        """
        merged: list[tuple[Direction, bytes]] = []
        for entry in self.entries:
            if merged and merged[-1][0] == entry.direction:
                merged[-1] = (entry.direction, merged[-1][1] + entry.data)
            else:
                merged.append((entry.direction, entry.data))
        return merged

    def bytes_sent(self) -> bytes:
        return b"".join(e.data for e in self.entries if e.direction == "tx")

    def bytes_received(self) -> bytes:
        return b"".join(e.data for e in self.entries if e.direction == "rx")

    def to_list(self) -> list[dict[str, str]]:
        return [entry.to_dict() for entry in self.entries]

    def to_json(self) -> str:
        """Return the transcript as a JSON array of entry dicts."""
        return json.dumps(self.to_list())

    @classmethod
    def from_json(cls, text: str) -> Transcript:
        """Return a transcript read back from ``to_json`` output."""
        transcript = cls()
        transcript._entries = [TranscriptEntry.from_dict(item) for item in json.loads(text)]
        return transcript
