"""A GGUF file changed in place while a model runs over its map (issue 12): ``load_llama``
hands the model its file (``model.weight_files``), and every forward, prefill chunk, decode
step (the captured C replay included) and ``predict`` checks it first, so a truncated file
raises a ``GGUFError`` naming it instead of killing the process with SIGBUS, and a file
rewritten with other bytes (``cp`` over it) raises instead of computing with them. Each run
is a subprocess: a failure there is a crash, not a hung or dead test session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from tiny_llama import write_tiny_llama

from qorus_layers_llm.llama import load_llama

SCRIPT = r"""
import json, os, shutil, sys
import numpy as np
from qorus_core.errors import GGUFError
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.llama import load_llama

path, kernels, how, other = sys.argv[1:5]
llm = load_llama(path, kernels=kernels)
gen = Generator(llm.model)
logits = gen.feed([5, 6, 7])
for _ in range(5):                        # on C the decode step is captured (replayed) by now
    logits = gen.step(int(logits.argmax()))
replayed = gen.replay is not None
if how in ("truncate", "unchecked"):
    os.truncate(path, 4096)               # the same inode shrinks: the weights' pages are gone
else:
    shutil.copyfile(other, path)          # cp: the same inode rewritten, same size
if how == "unchecked":                    # the control: the forward without the check dies
    plan = gen._chunks[1][0]
    for f, x, ctx in plan._fwd:
        f(x, ctx)
    print("NO CRASH")
    sys.exit(0)
out = {"replayed": replayed, "errors": {}}
calls = {"step": lambda: gen.step(1), "feed": lambda: gen.feed([1, 2, 3]),
         "predict": lambda: llm.model.predict(np.zeros((1, llm.context), np.int32)),
         "sequence": lambda: llm.model.sequence().predict(np.zeros((1, llm.context), np.int32))}
for name, call in calls.items():
    try:
        call()
        out["errors"][name] = None
    except GGUFError as exc:
        out["errors"][name] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("mapped")
    a = write_tiny_llama(d / "a.gguf", "q8_0", tied=False, seed=0)
    b = write_tiny_llama(d / "b.gguf", "q8_0", tied=False, seed=1)
    assert os.path.getsize(a) == os.path.getsize(b) and a.read_bytes() != b.read_bytes()
    return a, b


def _run(originals, tmp_path, kernels: str, how: str) -> subprocess.CompletedProcess:
    path = tmp_path / "model.gguf"
    shutil.copyfile(originals[0], path)
    st = os.stat(path)                    # an mtime clearly in the past, so a rewrite shows
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10 ** 10))
    return subprocess.run([sys.executable, "-c", SCRIPT, str(path), kernels, how, str(originals[1])],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how, change", [("truncate", "it shrank from"),
                                         ("cp", "it was rewritten (its modification time changed)")])
def test_a_file_changed_between_decode_steps_raises_naming_it(originals, tmp_path, kernels, how,
                                                              change):
    proc = _run(originals, tmp_path, kernels, how)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replayed"] == (kernels == "c")
    for name, msg in out["errors"].items():
        assert msg is not None, f"{name} ran over the changed file"
        assert str(tmp_path / "model.gguf") in msg and change in msg, (name, msg)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGBUS on a truncated map is "
                    "Linux behaviour; the control checks the test provokes it")
def test_control_without_the_check_the_truncation_is_a_sigbus(originals, tmp_path):
    """What the check prevents: the same forward, bypassing it, dies of SIGBUS."""
    proc = _run(originals, tmp_path, "numpy", "unchecked")
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stdout, proc.stderr[-2000:])


def test_load_llama_hands_the_model_its_file(originals):
    for dequantize in (False, True):      # F32 tensors stay mapped even when dequantized
        llm = load_llama(originals[0], dequantize=dequantize)
        assert llm.model.weight_files == (llm.gguf,)
        llm.model.check_weight_files()
