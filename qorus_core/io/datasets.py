"""Data sets as ``(x, y)`` NumPy arrays: CSV, NPZ, IDX (MNIST's format, see ``idx.py``),
scikit-learn's digits, Fashion-MNIST, text as next-byte windows, and a split helper.

Inputs come back float32; labels int32 when every label is a whole number within int32
(classification), else float32 (regression). Errors are DataError naming the file, line and column at fault.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

_I32 = np.iinfo(np.int32)


def _labels(y: np.ndarray, where: str, lines: list[int] | None = None) -> np.ndarray:
    """int32 class labels when every label is a whole number that fits int32, else float32
    regression targets. Integer labels outside int32 are refused (DataError naming the row,
    or the file's line: ``lines[row]``): a cast would wrap 2**32 + k to k, and float32 would
    round them. Whole floats beyond int32 cannot be class indices: they stay targets."""
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise DataError(f"{where}: labels have non-numeric dtype {y.dtype}")
    if y.dtype.kind in "iu":
        if y.size and (y.min() < _I32.min or y.max() > _I32.max):
            r = int(np.argwhere((y < _I32.min) | (y > _I32.max))[0][0])
            at = f"line {lines[r]}" if lines is not None else f"row {r}"
            raise DataError(f"{where}: {at}: label {y[r].tolist()} does "
                            f"not fit int32 (class labels are int32)")
        return np.ascontiguousarray(y, dtype=np.int32)
    whole = (y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and np.array_equal(y, np.round(y))
             and (not y.size or (y.min() >= _I32.min and y.max() <= _I32.max)))
    return np.ascontiguousarray(y, dtype=np.int32 if whole else np.float32)


def load_csv(path: str | os.PathLike, label_column: int | str = -1, delimiter: str = ",",
             header: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Numeric CSV: every column but ``label_column`` (an index or, with a header, a name) is a
    feature. ``header=None`` detects a header row (a first row that is not all numbers)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(i + 1, r) for i, r in enumerate(csv.reader(f, delimiter=delimiter))
                    if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    names: list[str] | None = None
    if header is None:
        header = not all(_is_number(c) for c in rows[0][1])
    if header:
        names = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: no data rows")
    width = len(rows[0][1])
    if isinstance(label_column, str):
        if names is None or label_column not in names:
            raise DataError(f"{path}: no column named {label_column!r}; columns: {names}")
        label = names.index(label_column)
    else:
        label = int(label_column) % width if -width <= int(label_column) < width else -1
        if label < 0:
            raise DataError(f"{path}: label column {label_column} out of range for {width} columns")
    data = np.empty((len(rows), width), np.float64)
    for r, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}:{line}: {len(row)} columns, expected {width}")
        for c, cell in enumerate(row):
            try:
                data[r, c] = float(cell)
            except ValueError:
                raise DataError(f"{path}:{line}: column {c + 1}: {cell!r} is not a number") from None
    x = np.delete(data, label, axis=1).astype(np.float32)
    return np.ascontiguousarray(x), _labels(data[:, label], str(path), [line for line, _ in rows])


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def load_npz(path: str | os.PathLike, x_key: str = "x", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x_key`` (inputs) and ``y_key`` (labels or targets) of a ``.npz`` file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if x_key not in keys or y_key not in keys:
                raise DataError(f"{path}: needs arrays {x_key!r} and {y_key!r}; it has {keys}")
            x, y = z[x_key], z[y_key]
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read NPZ: {exc}") from None
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} inputs but {len(y)} labels")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: {x_key} has non-numeric dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32), _labels(y, f"{path}: {y_key}")


def load_named(path: str | os.PathLike, inputs: dict[str, str], targets: dict[str, str]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Named arrays for a model of several inputs or outputs: ``inputs`` / ``targets`` map
    the model's names to array names. ``path`` is a ``.npz`` file (its arrays are read into
    memory) or a directory of ``<array>.npy`` files, memory-mapped read-only: training then
    streams each batch's rows from the files, without a copy of the data set. Inputs keep
    their dtype (int ids, bool masks); targets are labels as ``_labels`` makes them."""
    path = Path(path)
    wanted = {**inputs, **targets}
    if path.is_dir():
        arrays = {}
        for key in set(wanted.values()):
            f = path / f"{key}.npy"
            try:
                arrays[key] = np.load(f, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                have = sorted(p.stem for p in path.glob("*.npy"))
                raise DataError(f"{path}: no {key}.npy (arrays there: {have})") from None
            except (OSError, ValueError) as exc:
                raise DataError(f"{f}: cannot map the array: {exc}") from None
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                missing = sorted(set(wanted.values()) - set(keys))
                if missing:
                    raise DataError(f"{path}: needs arrays {missing}; it has {keys}")
                arrays = {k: z[k] for k in set(wanted.values())}
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read NPZ: {exc}") from None
    lengths = {k: len(a) if a.ndim else 0 for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: arrays of different lengths {lengths}")
    for k, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise DataError(f"{path}: array {k!r} has non-numeric dtype {a.dtype}")
    xs = {name: arrays[key] for name, key in inputs.items()}
    ys = {name: arrays[key] if arrays[key].dtype.kind == "f" and arrays[key].ndim > 1
          else _labels(arrays[key], f"{path}: {key}") for name, key in targets.items()}
    return xs, ys


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits: x (1797, 64) float32 in [0, 16], y int32 0..9.
    Ships inside scikit-learn: no download."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    d = sk_load_digits()
    return np.ascontiguousarray(d.data, dtype=np.float32), np.ascontiguousarray(d.target, dtype=np.int32)


def read_text_bytes(path: str | os.PathLike) -> np.ndarray:
    """The bytes of a file, or of every file under a directory (sorted, recursive; ``.dat``
    index files such as fortune's are skipped, and a file reached twice through a symlink is
    read once), as one uint8 array."""
    path = Path(path)
    if path.is_dir():
        seen: set[Path] = set()
        files = []
        for f in sorted(path.rglob("*")):
            real = f.resolve()
            if f.suffix == ".dat" or not real.is_file() or real in seen:
                continue
            seen.add(real)
            files.append(real)
        if not files:
            raise DataError(f"{path}: no text files in this directory")
    else:
        files = [path]
    chunks = []
    for f in files:
        try:
            chunks.append(np.frombuffer(f.read_bytes(), np.uint8))
        except OSError as exc:
            raise DataError(f"{f}: cannot read: {exc.strerror or exc}") from None
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def text_windows(data: np.ndarray, seq_len: int, stride: int | None = None, offset: int = 0,
                 what: str = "text") -> tuple[np.ndarray, np.ndarray]:
    """Next-token windows over a token array: ``x[i] = data[s:s+T]``, ``y[i] = data[s+1:s+T+1]``
    for ``s = offset, offset + stride, ...`` (stride defaults to T: no overlap). int32 [N, T]."""
    T = int(seq_len)
    stride = T if stride is None else int(stride)
    if T <= 0 or stride <= 0:
        raise DataError(f"{what}: seq_len ({seq_len}) and stride ({stride}) must be positive")
    n = (len(data) - offset - T - 1) // stride + 1 if len(data) - offset >= T + 1 else 0
    if n <= 0:
        raise DataError(f"{what}: {len(data)} tokens are too few for one window of {T} + 1")
    starts = offset + stride * np.arange(n)
    idx = starts[:, None] + np.arange(T + 1)[None, :]
    w = data[idx].astype(np.int32)
    return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])


def load_text(path: str | os.PathLike, seq_len: int, validation: float = 0.1, test: float = 0.0,
              seed: int = 0, stride: int | None = None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """A byte-level language-modelling set: ``(train, validation, test)`` window pairs.

    The bytes are cut in order into train | validation | test parts (the held-out parts are
    the tail, so no window straddles two parts and nothing leaks); training windows start at
    a seeded random offset below ``stride``, held-out windows at 0. A fraction of 0 gives an
    empty pair.
    """
    data = read_text_bytes(path)
    if not (0.0 <= validation < 1.0 and 0.0 <= test < 1.0 and validation + test < 1.0):
        raise DataError(f"{path}: validation ({validation}) and test ({test}) must be fractions "
                        "summing to less than 1")
    n = len(data)
    n_val, n_test = int(round(n * validation)), int(round(n * test))
    cut_val, cut_test = n - n_val - n_test, n - n_test
    T = int(seq_len)
    step = T if stride is None else int(stride)
    offset = int(np.random.default_rng(seed).integers(0, max(step, 1))) if step > 0 else 0
    if cut_val - offset < T + 1:
        offset = 0
    empty = (np.zeros((0, T), np.int32), np.zeros((0, T), np.int32))
    parts = [text_windows(data[:cut_val], T, step, offset, f"{path} (training part)")]
    for lo, hi, name in ((cut_val, cut_test, "validation"), (cut_test, n, "test")):
        parts.append(text_windows(data[lo:hi], T, step, 0, f"{path} ({name} part)")
                     if hi > lo else empty)
    return tuple(parts)  # type: ignore[return-value]


def unigram_cross_entropy(train_tokens: np.ndarray, eval_tokens: np.ndarray, vocab: int) -> float:
    """Cross-entropy (nats) of ``eval_tokens`` under the token frequencies of ``train_tokens``
    (add-one smoothed, so an unseen token costs a finite amount): the loss a model that ignores
    context would reach, the baseline a language model must beat."""
    counts = np.bincount(np.asarray(train_tokens).reshape(-1), minlength=vocab)[:vocab] + 1.0
    logp = np.log(counts / counts.sum())
    ev = np.asarray(eval_tokens).reshape(-1)
    if ev.size == 0:
        raise DataError("unigram_cross_entropy: no tokens to evaluate")
    if int(ev.min()) < 0 or int(ev.max()) >= vocab:
        raise DataError(f"unigram_cross_entropy: tokens outside [0, {vocab})")
    return float(-logp[ev].mean())


#: the kinds of source string (the part before ':'), and how each is written
KINDS = ("sklearn", "csv", "npz", "npy", "idx", "fashion-mnist", "fashion-mnist-test", "text")
SOURCES = ("'sklearn:digits'", "'csv:PATH'", "'npz:PATH'", "'npy:DIR'", "'idx:IMAGES_PATH,LABELS_PATH'",
           "'fashion-mnist[:DIR]'", "'fashion-mnist-test[:DIR]'", "'text:PATH'")


def load_source(source: str, base: str | os.PathLike | None = None,
                **options) -> tuple[np.ndarray, np.ndarray]:
    """A data set named by a source string (relative paths from ``base``):

    - ``"sklearn:digits"``; ``"csv:PATH"`` and ``"npz:PATH"`` (``options`` go to the loader);
    - ``"npy:DIR"``: ``x.npy`` and ``y.npy`` (``x_key``/``y_key``) memory-mapped (``load_named``);
    - ``"idx:IMAGES_PATH,LABELS_PATH"``: a pair of IDX files, plain or gzipped;
    - ``"fashion-mnist[:DIR]"`` and ``"fashion-mnist-test[:DIR]"``: the 60000 training or
      10000 test images of Fashion-MNIST, from ``DIR`` (default
      ``/usr/share/datasets/fashion-mnist``, Debian's ``dataset-fashion-mnist``);
    - ``"text:PATH"``: every next-byte window of a file or directory (options ``seq_len``,
      required, and ``stride``); ``load_text`` splits one into train/validation/test.
    """
    from .idx import load_fashion_mnist, load_idx

    def resolve(p: str) -> Path:
        path = Path(p.strip()).expanduser()
        return Path(base) / path if base is not None and not path.is_absolute() else path

    kind, _, rest = str(source).partition(":")
    if kind == "sklearn":
        if rest != "digits":
            raise DataError(f"data source {source!r}: the sklearn data set available is 'digits'")
        return load_digits()
    if kind in ("csv", "npz") and rest:
        path = resolve(rest)
        return load_csv(path, **options) if kind == "csv" else load_npz(path, **options)
    if kind == "npy" and rest:
        if set(options) - {"x_key", "y_key"}:
            raise DataError(f"data source {source!r} takes x_key and y_key, got {sorted(options)}")
        xs, ys = load_named(resolve(rest), {"x": options.get("x_key", "x")},
                            {"y": options.get("y_key", "y")})
        return xs["x"], ys["y"]
    if kind == "text" and rest:
        if "seq_len" not in options or set(options) - {"seq_len", "stride"}:
            raise DataError(f"data source {source!r} takes seq_len (required) and stride, "
                            f"got {sorted(options)}")
        return text_windows(read_text_bytes(resolve(rest)), options["seq_len"],
                            options.get("stride"), 0, str(resolve(rest)))
    if kind in ("idx", "fashion-mnist", "fashion-mnist-test") and options:
        raise DataError(f"data source {source!r} takes no options, got {sorted(options)}")
    if kind == "idx":
        paths = rest.split(",")
        if len(paths) != 2 or not all(p.strip() for p in paths):
            raise DataError(f"data source {source!r}: expected 'idx:IMAGES_PATH,LABELS_PATH'")
        return load_idx(resolve(paths[0]), resolve(paths[1]))
    if kind in ("fashion-mnist", "fashion-mnist-test"):
        part = "test" if kind.endswith("-test") else "train"
        return load_fashion_mnist(resolve(rest) if rest else None, part)
    raise DataError(f"data source {source!r}: expected {', '.join(SOURCES)}")


def split(x: Any, y: Any, validation: float = 0.1, test: float = 0.2, seed: int = 0
          ) -> tuple[tuple[Any, Any], ...]:
    """Deterministic shuffled split into ``(train, validation, test)`` pairs; the fractions
    are of the whole set (rounded); a fraction of 0 gives an empty pair. ``x`` and ``y`` may
    be dicts of arrays (several inputs or targets): each is split alike."""
    n = _rows(x)
    if _rows(y) != n:
        raise DataError(f"split: {n} inputs but {len(y)} labels")
    if not (0.0 <= validation < 1.0 and 0.0 <= test < 1.0 and validation + test < 1.0):
        raise DataError(f"split: validation ({validation}) and test ({test}) must be fractions "
                        "summing to less than 1")
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * validation))
    te, va, tr = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if len(tr) == 0:
        raise DataError(f"split: no training samples left out of {n}")
    if n_test == 0 and n_val == 0 and (isinstance(x, dict) or isinstance(x, np.memmap)):
        # all of it trains: mapped arrays stay mapped (the Trainer shuffles its batches)
        return (x, y), (_take(x, va), _take(y, va)), (_take(x, te), _take(y, te))
    return tuple((_take(x, i), _take(y, i)) for i in (tr, va, te))  # type: ignore[return-value]


def _rows(a: Any) -> int:
    if isinstance(a, dict):
        lengths = {len(v) for v in a.values()}
        if len(lengths) != 1:
            raise DataError(f"split: arrays of different lengths {sorted(lengths)}")
        return lengths.pop()
    return len(a)


def _take(a: Any, i: np.ndarray) -> Any:
    return {k: v[i] for k, v in a.items()} if isinstance(a, dict) else a[i]
