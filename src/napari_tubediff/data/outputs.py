"""Output safety: plan every file a command will write before any work starts.

The user's files are never lost. Every command that writes files first lists them
(`Output`: the path, the input it is made from, the record it will carry) and
`plan_outputs` checks the whole list at once, before any compute:

* two inputs must not write the same output (``a/x.tif`` and ``b/x.tif``, or
  ``y.png`` and ``y.tif``, both give ``x_refined.tif``);
* an output never replaces an input of the same command, ``--overwrite`` or not;
* an existing file is replaced only when tubediff wrote it for the same input (it
  carries tubediff's record, `read_record`) or the user passed ``--overwrite``;
* the output folders can be created and written, and (when the caller gives an
  estimate) the disk has room for the outputs.

A refused plan is a ValueError whose message says what to do; the CLI prints it as
one line and exits with code 2.

Records: tubediff writes a small JSON record into the images it makes (TIFF: the
shaped metadata; PNG: a text chunk): the command, the input's path, size and
modification time, and the settings that shape the result. A folder batch uses
it to resume (same input, same settings: done), to redo its own outputs made with
other settings, and to tell a user's own files (no record) from its own.

Output names (`output_path`): ``NAME_ROLE.SUFFIX`` where NAME is the input's stem
with one trailing tubediff role (``_prob``, ``_refined``, ``_mask``) removed, so a
pipeline does not double up names: ``01_test.tif`` -> ``01_test_prob.tif`` (segment)
-> ``01_test_refined.tif`` and ``01_test_mask.png`` (refine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROLES", "RECORD_KEY", "Output", "OutputPlan", "output_stem", "output_path", "image_shape",
           "make_record", "read_record", "plan_outputs", "remove_temporaries", "describe_changes"]

#: The suffixes tubediff gives its outputs; one of them ending an input's stem is dropped.
ROLES = ("prob", "refined", "mask")

#: Key of tubediff's record in a TIFF's shaped metadata and in a PNG's text chunks.
RECORD_KEY = "tubediff"

#: How many names a refusal lists before "and N more".
_SHOWN = 4


def output_stem(path) -> str:
    """The input's stem without one trailing tubediff role (``_prob``, ``_refined``, ``_mask``).

    Examples
    --------
    >>> output_stem("in/01_test_prob.tif"), output_stem("v.png"), output_stem("x_mask_prob.tif")
    ('01_test', 'v', 'x_mask')
    """
    stem = Path(path).stem
    for role in ROLES:
        if stem.endswith(f"_{role}") and len(stem) > len(role) + 1:
            return stem[: -len(role) - 1]
    return stem


def output_path(path, out_dir, role: str, suffix: str) -> Path:
    """Where the ``role`` output of input ``path`` goes: ``out_dir/NAME_ROLE.SUFFIX``.

    Examples
    --------
    >>> output_path("in/01_test_prob.tif", "out", "refined", ".tif").as_posix()
    'out/01_test_refined.tif'
    """
    return Path(out_dir) / f"{output_stem(path)}_{role}{suffix}"


def image_shape(path) -> tuple[int, ...] | None:
    """The array shape of an image file from its header only (None when unreadable).

    TIFF: the first series, less leading singleton axes as `data.io.read_image` drops them
    (a one-plane stack ``(1, H, W)`` is the 2D image it reads); PNG, GIF, JPEG: ``(H, W)``
    or ``(H, W, C)`` by the mode.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tuple(tf.series[0].shape)
            while len(shape) > 2 and shape[0] == 1:
                shape = shape[1:]
            return shape
        from PIL import Image

        from .io import pillow_shape

        with Image.open(path) as im:
            return pillow_shape(im)  # the shape read_image gives (grey + alpha is RGBA)
    except Exception:  # noqa: BLE001 - unreadable here: the reader later says why, one line
        return None


# ---------------------------------------------------------------- records

def _plain(obj):
    # the JSON form the record will have once read back (tuples -> lists, paths -> str)
    return json.loads(json.dumps(obj, default=str))


def make_record(command: str, source, settings: dict) -> dict:
    """The record tubediff writes into an output made by ``command`` from ``source``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "v.tif"; _ = f.write_bytes(b"12345")
    >>> r = make_record("refine", f, {"steps": 10})
    >>> r["command"], r["input"]["size"], r["settings"]
    ('refine', 5, {'steps': 10})
    """
    from .. import __version__

    rec = {"command": command, "version": __version__, "settings": _plain(settings)}
    if source is not None:
        p = Path(source).resolve()
        st = p.stat()
        rec["input"] = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return rec


def read_record(path) -> dict | None:
    """tubediff's record in an existing TIFF, PNG or JSON file (None: no record, not tubediff's).

    JSON: a top-level object with a ``"tubediff"`` key (the record), as ``tubediff demo``
    and ``tubediff bench --json`` write.
    """
    path = Path(path)
    text = None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                meta = tf.shaped_metadata
                text = meta[0].get(RECORD_KEY) if meta else None
        elif path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                text = getattr(im, "text", {}).get(RECORD_KEY)
        elif path.suffix.lower() == ".json" and path.stat().st_size < 2**24:
            data = json.loads(path.read_text())
            text = json.dumps(data[RECORD_KEY]) if isinstance(data, dict) and RECORD_KEY in data else None
        if text is None:
            return None
        rec = json.loads(text)
    except Exception:  # noqa: BLE001 - unreadable or not ours: a foreign file
        return None
    return rec if isinstance(rec, dict) and "command" in rec else None


def describe_changes(old: dict, new: dict) -> str:
    """What differs between an existing record and the one a run would write, in words.

    Examples
    --------
    >>> describe_changes({"settings": {"steps": 3000}}, {"settings": {"steps": 30}})
    'steps 3000 -> 30'
    """
    parts = []
    if old.get("command") != new.get("command"):
        parts.append(f"made by {old.get('command')!r}")
    if old.get("input") != new.get("input"):
        parts.append("the input changed since")
    a, b = old.get("settings", {}), new.get("settings", {})
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            parts.append(f"{k} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}")
    return ", ".join(parts) or "same settings"


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Output:
    """One file a command will write.

    Parameters
    ----------
    path : Path
        Where it goes.
    source : Path, optional
        The input it is made from (None for files made from several inputs, such as
        trained weights); named in collision messages.
    record : dict, optional
        The record it will carry (`make_record`); an existing file with the same
        command and input is tubediff's own and may be replaced. None: the file carries
        no record, so an existing one is always the user's.
    """

    path: Path
    source: Path | None = None
    record: dict | None = None


@dataclass
class OutputPlan:
    """The checked outputs of one command and the state of each.

    ``state[path]`` is ``"new"`` (absent), ``"current"`` (tubediff's, same input and
    settings), ``"stale"`` (tubediff's, same input, other settings or changed input;
    ``why[path]`` says what changed) or ``"replace"`` (someone else's, replaced with
    ``--overwrite``).
    """

    outputs: list[Output]
    state: dict[Path, str] = field(default_factory=dict)
    why: dict[Path, str] = field(default_factory=dict)

    def current(self, paths: Iterable[Path]) -> bool:
        """True when every one of ``paths`` is tubediff's up-to-date output (resume skips it)."""
        return all(self.state.get(Path(p)) == "current" for p in paths)

    def folders(self) -> list[Path]:
        """The output folders, to create once the plan is accepted."""
        return sorted({o.path.parent for o in self.outputs})

    def make_folders(self) -> None:
        """Create the output folders (after the checks, so a refusal leaves nothing behind)."""
        for d in self.folders():
            d.mkdir(parents=True, exist_ok=True)


def _key(p: Path) -> str:
    return os.path.normcase(str(Path(os.path.abspath(p)).resolve()))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _nearest_existing(d: Path) -> Path:
    d = Path(os.path.abspath(d))
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def _check_folder(d: Path) -> None:
    """ValueError unless folder ``d`` exists and is writable, or can be created."""
    base = _nearest_existing(d)
    if not base.is_dir():
        raise ValueError(f"cannot write into {d}: {base} is a file, not a folder")
    try:  # a real probe: permissions, read-only mounts and ACLs all show here (os.access lies to root)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".tubediff-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"cannot write into {d}: {base} is not writable ({e.strerror or e}); "
                         "choose another --out") from None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def plan_outputs(outputs: Sequence[Output], inputs: Iterable = (), *, overwrite: bool = False,
                 need_bytes: int = 0) -> OutputPlan:
    """Check every output of a command before it starts; ValueError (one line) when it must not.

    Parameters
    ----------
    outputs : sequence of Output
        Every file the command will write.
    inputs : iterable of path
        Every file the command reads; none of them is ever written over.
    overwrite : bool
        The user's ``--overwrite``: existing files without tubediff's record for the
        same input may be replaced.
    need_bytes : int
        Estimated size of the outputs; refused when the disk has less room.

    Returns
    -------
    OutputPlan
        The state of every output (``new``, ``current``, ``stale``, ``replace``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "x.png").write_bytes(b"mine")
    >>> plan_outputs([Output(d / "x.png")])
    Traceback (most recent call last):
    ...
    ValueError: x.png exists in ... and tubediff did not make it from this input: pass --overwrite ...
    >>> plan_outputs([Output(d / "x.png")], overwrite=True).state[d / "x.png"]
    'replace'
    """
    outputs = [Output(Path(o.path), None if o.source is None else Path(o.source), o.record) for o in outputs]
    input_keys = {_key(Path(p)): Path(p) for p in inputs}
    plan = OutputPlan(outputs)

    # 1. two inputs -> one output
    seen: dict[str, Output] = {}
    clashes: dict[tuple, list[Path]] = {}  # (first input, second input) -> the outputs both would write
    for o in outputs:
        k = _key(o.path)
        if k in seen:
            clashes.setdefault((seen[k].source, o.source), []).append(o.path)
        else:
            seen[k] = o
    if clashes:
        twice = [a for (a, b) in clashes if a is not None and b is not None and _key(a) == _key(b)]
        if twice:
            raise ValueError(f"{_listing([str(a) for a in twice])} is given more than once: give each "
                             "input once")
        lines = [f"{'two outputs' if a is None or b is None else f'{a} and {b}'} would both write "
                 f"{', '.join(p.name for p in ps)} in {ps[0].parent}" for (a, b), ps in clashes.items()]
        raise ValueError(f"{_listing(lines)}: rename one of the inputs or run them with different --out "
                         "folders (nothing was written)")

    # 2. a folder where a file goes; an output over an input: never
    folders = [str(o.path) for o in outputs if o.path.is_dir()]
    if folders:
        raise ValueError(f"{_listing(folders)} is a folder where a file is to be written: remove it or "
                         "choose another --out")
    over = [o for o in outputs if _key(o.path) in input_keys]
    if over:
        names = [str(o.path) for o in over]
        raise ValueError(f"{_listing(names)} is an input of this command and would be overwritten: choose "
                         "another --out (--overwrite never replaces an input)")

    # 3. existing files: tubediff's own for the same input, or the user's
    foreign: list[Path] = []
    for o in outputs:
        p = o.path
        if not p.exists() and not p.is_symlink():
            plan.state[p] = "new"
            continue
        old = read_record(p) if o.record is not None else None
        same_input = (old is not None and old.get("command") == o.record.get("command")
                      and (old.get("input") or {}).get("path") == (o.record.get("input") or {}).get("path"))
        if same_input:
            stale = (old.get("input") != o.record.get("input")
                     or old.get("settings") != o.record.get("settings"))
            plan.state[p] = "stale" if stale else "current"
            if stale:
                plan.why[p] = describe_changes(old, o.record)
        elif overwrite:
            plan.state[p] = "replace"
        else:
            foreign.append(p)
    if foreign:
        it, s_ = ("it", "s") if len(foreign) == 1 else ("them", "")
        src = "this input" if len({o.source for o in outputs}) < 2 else "these inputs"
        raise ValueError(f"{_listing([f.name for f in foreign])} exist{s_} in {foreign[0].parent} and "
                         f"tubediff did not make {it} from {src}: pass --overwrite to replace {it}, or "
                         "choose another --out")

    # 4. the folders can be written, and hold the outputs
    for d in plan.folders():
        _check_folder(d)
    if need_bytes > 0 and outputs:
        where = _nearest_existing(outputs[0].path.parent)
        free = shutil.disk_usage(where).free
        if free < need_bytes:
            raise ValueError(f"the outputs need about {_human(need_bytes)} but {where} has {_human(free)} "
                             "free: free some space or choose another --out")
    return plan


_TMP = re.compile(r"^[a-z0-9_]{8}$")


def remove_temporaries(paths: Iterable) -> list[Path]:
    """Delete the hidden temporaries that `data.io.atomic_path` left for ``paths`` (a killed writer).

    Only names of the exact form ``.NAME.XXXXXXXX.SUFFIX`` (``tempfile.mkstemp``'s) next to
    a planned output are touched. Returns what was removed.
    """
    removed = []
    for p in map(Path, paths):
        if not p.parent.is_dir():
            continue
        head, tail = f".{p.name}.", p.suffix
        for q in p.parent.glob(f".{glob_escape(p.name)}.*"):
            mid = q.name[len(head): len(q.name) - len(tail)] if tail else q.name[len(head):]
            if q.name.startswith(head) and q.name.endswith(tail) and _TMP.match(mid) and q.is_file():
                q.unlink(missing_ok=True)
                removed.append(q)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped."""
    import glob

    return glob.escape(name)
