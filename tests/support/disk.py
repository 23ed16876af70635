"""A tmpfs of a few KiB mounted for one test: a real file system that really fills up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class TinyFs:
    """A mounted tmpfs (the `tiny_fs` fixture mounts and unmounts it; mounting needs root)."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        self.size_kib = size_kib

    def resize(self, size_kib: int) -> None:
        """Give it more (or less) room: a remount, as an administrator freeing space would."""
        subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(self.path)], check=True,
                       capture_output=True)
        self.size_kib = size_kib

    def fill(self, leave: int = 0) -> None:
        """Take all its free space but `leave` bytes, with a file named .fill."""
        with open(self.path / ".fill", "ab") as f:
            while True:
                free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
                if free <= leave:
                    break
                try:
                    f.write(b"\0" * min(4096, free - leave))
                    f.flush()
                except OSError:
                    break

    def free(self) -> None:
        (self.path / ".fill").unlink(missing_ok=True)
