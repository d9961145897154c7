"""A review queue over a folder of images: next unfinished image, saved curated labels, status.

`CurationQueue(folder)` keeps its files in ``folder/curated/`` (the user's folder gets
nothing else): for an image ``NAME.EXT``

* ``curated/NAME_curated.tif``: the curated labels (values kept), written atomically
  with tubediff's record (`data.outputs.make_record`);
* ``curated/NAME_curated.json``: the status: ``state`` (``"reviewed"``: saved, still
  open; ``"done"``: finished), ``by`` (who), ``when`` (UTC, ISO 8601), ``settings``
  (what the annotator used), the label file's size and modification time.

The queue resumes from these files alone: after a restart `next_unfinished` is the
first image (by name) whose status is not done, and `load` restores its labels.
Nothing saved is overwritten without asking: `save` refuses (ValueError) when the
labels file on disk is not the one this queue last loaded or saved for that image (a
foreign file, or one changed by someone else since), unless ``overwrite=True``.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
from pathlib import Path

import numpy as np

from .io import IMAGE_SUFFIXES, atomic_write_text, read_image, write_image
from .outputs import make_record, read_record

__all__ = ["CurationQueue", "REVIEWED", "DONE", "SUBFOLDER"]

REVIEWED, DONE = "reviewed", "done"
#: Where the queue's files go, inside the image folder.
SUBFOLDER = "curated"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): say so
        return "unknown"


class CurationQueue:
    """The images of ``folder`` in name order, with their saved labels and status.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("a", "b"):
    ...     _ = write_image(d / f"{n}.png", np.zeros((4, 4), np.uint8))
    >>> q = CurationQueue(d, user="ann")
    >>> q.next_unfinished().name
    'a.png'
    >>> _ = q.save(d / "a.png", np.ones((4, 4), np.uint8), state="done")
    >>> q.next_unfinished().name, CurationQueue(d).status(d / "a.png")["by"]
    ('b.png', 'ann')
    """

    def __init__(self, folder, user: str | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder} is not a folder: give the folder of images to review")
        self.out = self.folder / SUBFOLDER
        self.user = user or _user()
        self._known: dict[str, tuple[int, int] | None] = {}  # the labels file as last loaded/saved
        imgs = self.images()
        if not imgs:
            raise ValueError(f"no images in {self.folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        stems: dict[str, Path] = {}
        for p in imgs:
            if p.stem in stems:
                raise ValueError(f"{stems[p.stem].name} and {p.name} would share their curated labels: "
                                 "rename one of them")
            stems[p.stem] = p

    # -- the files ---------------------------------------------------------------------
    def images(self) -> list[Path]:
        """The images to review, by name (hidden files and the queue's own folder skipped)."""
        return sorted(p for p in self.folder.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)

    def labels_path(self, image) -> Path:
        return self.out / f"{Path(image).stem}_curated.tif"

    def status_path(self, image) -> Path:
        return self.out / f"{Path(image).stem}_curated.json"

    def status(self, image) -> dict | None:
        """The saved status of ``image`` (None: never saved)."""
        p = self.status_path(image)
        try:
            return json.loads(p.read_text()) if p.exists() else None
        except (OSError, ValueError):
            return None  # unreadable: treated as not saved, and never overwritten silently (save checks)

    def state(self, image) -> str:
        s = self.status(image)
        return s.get("state", REVIEWED) if s else "new"

    def next_unfinished(self, after=None) -> Path | None:
        """The first image (after ``after``, wrapping round) whose status is not done; None: all done."""
        imgs = self.images()
        start = 0
        if after is not None and Path(after) in imgs:
            start = imgs.index(Path(after)) + 1
        for p in imgs[start:] + imgs[:start]:
            if self.state(p) != DONE:
                return p
        return None

    def progress(self) -> tuple[int, int]:
        """(done, total)."""
        imgs = self.images()
        return sum(self.state(p) == DONE for p in imgs), len(imgs)

    # -- labels ------------------------------------------------------------------------
    @staticmethod
    def _stamp(p: Path) -> tuple[int, int] | None:
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def load(self, image) -> np.ndarray | None:
        """The curated labels saved for ``image`` (None: nothing saved yet)."""
        p = self.labels_path(image)
        self._known[Path(image).name] = self._stamp(p)
        return read_image(p) if p.exists() else None

    def save(self, image, labels, *, state: str = REVIEWED, settings: dict | None = None,
             overwrite: bool = False) -> Path:
        """Write the labels of ``image`` and its status, atomically; returns the labels file.

        Refused (ValueError) when a labels file is on disk that this queue did not load or
        save for this image, or that changed since (another session, another program),
        unless ``overwrite``.
        """
        if state not in (REVIEWED, DONE):
            raise ValueError(f"state must be {REVIEWED!r} or {DONE!r}, got {state!r}")
        image = Path(image)
        p = self.labels_path(image)
        now = self._stamp(p)
        if now is not None and not overwrite:
            if read_record(p) is None:
                raise ValueError(f"{p} exists and tubediff did not write it: move it away, or save with "
                                 "overwrite to replace it")
            if self._known.get(image.name, "unknown") != now:
                raise ValueError(f"{p} changed since it was opened here (another session?): reopen the "
                                 "image to see it, or save with overwrite to replace it")
        labels = np.asarray(labels)
        if labels.dtype == bool:
            labels = labels.astype(np.uint8)
        settings = dict(settings or {})
        self.out.mkdir(parents=True, exist_ok=True)
        write_image(p, labels, record=make_record("curate", image, {"state": state, **settings}))
        stamp = self._stamp(p)
        self._known[image.name] = stamp
        status = {"image": image.name, "labels": p.name, "state": state, "by": self.user,
                  "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "settings": settings, "labels_size": stamp[0], "labels_mtime_ns": stamp[1]}
        atomic_write_text(self.status_path(image), json.dumps(status, indent=2))
        return p
