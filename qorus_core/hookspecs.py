"""The Qorus hook specification (pluggy project ``"qorus"``).

A plugin is a module (or any object) carrying functions marked with ``hookimpl``, advertised
through an entry point in the group ``qorus``. The entry point's NAME is the plugin's
namespace; every item the plugin registers is named ``<namespace>.<name>``::

    # pyproject.toml of a plugin package
    [project.entry-points.qorus]
    mlp = "qorus_layers_mlp.plugin"

    # qorus_layers_mlp/plugin.py
    from qorus_core.hookspecs import hookimpl

    @hookimpl
    def qorus_register_layers(register):
        register(Linear)              # -> "mlp.Linear"
        register(Linear, "Dense")     # -> "mlp.Dense" (an alias)

Hooks run once, when the registry loads plugins (on its first use), never per step; the
``register`` callable they receive works only while the hook runs. A plugin's import and
registration hooks run in a worker thread of their own, bounded by ``QORUS_PLUGIN_TIMEOUT``
seconds (default 30): keep them quick, and do not install signal handlers there (Python
allows that in the main thread only). A plugin whose import or hook raises anything
(``sys.exit`` and ``KeyboardInterrupt`` included) or runs past that time is recorded as failed
(``qorus plugins``) and registers nothing: its items are committed all together only after all
its hooks returned in time.

The namespace must be the plugin's own: the first-party ones (``core``, ``mlp``, ``llm``,
``cnn``, ``rnn``, ``tpl``) are refused to any other distribution, and a namespace that two
distributions claim is refused to both (see ``qorus_core.registry``). Rename ``tpl`` when
copying the template plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pluggy

PROJECT = "qorus"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable a registration hook receives.

    ``register(obj, name=None)`` records ``obj`` as ``<namespace>.<name>``; ``name`` defaults to
    ``obj.__name__`` and must not contain a dot. It returns ``obj`` (so it also works as a
    decorator) and raises ``RegistryError`` for a bad name or a name this plugin already used.
    When the plugin is committed, ``obj.registry_name`` is set to the full name (last
    registration wins for aliases) so ``get_config`` round-trips through the registry.
    """

    def __call__(self, obj: Any, name: str | None = None) -> Any:
        """Record ``obj`` as ``<namespace>.<name>`` and return it."""


@hookspec
def qorus_register_layers(register: Register) -> None:
    """Register layer classes: call ``register(cls)`` / ``register(cls, name)`` for each.

    ``cls`` must be a class, and a subclass of ``qorus_core.layer.Layer``; its first docstring
    line is what ``qorus layers`` shows. Import heavy dependencies inside the hook or lazily:
    the hook runs whenever any Qorus user loads the registry.
    """


@hookspec
def qorus_register_losses(register: Register) -> None:
    """Register losses (classes or callables): call ``register(obj)`` / ``register(obj, name)``.

    Same naming, doc and failure rules as ``qorus_register_layers``.
    """


@hookspec
def qorus_register_optimizers(register: Register) -> None:
    """Register optimizers (classes or callables): ``register(obj)`` / ``register(obj, name)``.

    Same naming, doc and failure rules as ``qorus_register_layers``.
    """


@hookspec
def qorus_register_callbacks(register: Register) -> None:
    """Register training callbacks: subclasses of ``qorus_core.train.callbacks.Callback``
    (``on_epoch_end(trainer, epoch, logs)`` and friends; ``state_dict`` for what a checkpoint
    keeps), by ``register(cls)`` / ``register(cls, name)``. ``qorus train`` builds them from
    ``[[callbacks]]`` tables by name. Same naming, doc and failure rules as
    ``qorus_register_layers``.
    """


class RegisterKernel(Protocol):
    """The callable ``qorus_register_kernels`` receives.

    ``register(kernel, library=None)`` records a declaration made with
    ``qorus_core.kernels.declare_kernel`` as ``<namespace>.<kernel name>``; ``library`` is the
    path of the plugin's own shared library holding the declaration's C symbols (one library
    per plugin). Returns ``kernel``; raises ``RegistryError`` for a name used twice.
    """

    def __call__(self, kernel: Any, library: Any = None) -> Any:
        """Record ``kernel`` (C symbols in ``library``) and return it."""


@hookspec
def qorus_register_kernels(register: RegisterKernel) -> None:
    """Register kernels: ``register(kernel, library=path)`` for each of the plugin's kernels.

    Both kernel sets then serve each as ``k.<namespace>.<name>(...)`` (the template plugin's
    ``ctx.k.tpl.prelu(x, weight, y)``), with the declared check on both. The NumPy
    implementation is required and is the reference; C is optional: with no library, or a
    library file that is absent (not built), the C set runs the NumPy implementation and
    ``qorus kernels`` says why. A library that does not load or lacks a declared symbol, a C
    symbol with core's ``qr_`` prefix or another plugin's, and a bad declaration fail the
    plugin (``qorus plugins`` names the fault), as any registration error does. Check them
    with ``qorus_core.testing.check_kernel`` in the plugin's tests.
    """


@hookspec
def qorus_train_finished(model: Any, config: dict[str, Any], out_dir: Any,
                         echo: Any) -> None:
    """Called once after ``qorus train`` (``qorus_core.train.config.run_training``) has
    trained and saved a model, with every plugin's implementation, in registration order.

    ``model`` is the trained ``Model``; ``config`` the whole parsed TOML (a dict of sections,
    ``[data] source`` as overridden by ``--data``); ``out_dir`` the run's output directory
    (a ``pathlib.Path``, holding ``checkpoint/`` and ``metrics.json``); ``echo(text)`` prints
    a line for the user (use it instead of ``print`` so callers can capture output). Act
    only on the sections you own (the llm plugin reads ``[sample]``) and return quietly
    otherwise. What a hook raises (``sys.exit`` included, Ctrl-C excepted) is reported naming
    its plugin and the other plugins' hooks still run. Return values are ignored.
    """


@hookspec(firstresult=True)
def qorus_convert(src: Any, qtype: str) -> tuple[dict[str, Any], Mapping[str, Any]] | None:
    """Read a model directory for ``qorus convert`` (``qorus_core.io.convert.convert``), which
    calls this hook when its input is a directory, in this thread and unbounded, plugins in
    turn (the last loaded first) until one returns something.

    ``src`` is the directory (a ``pathlib.Path``); ``qtype`` the output type asked for
    (``q4_0``, ``q4_1``, ``q8_0``, ``f16`` or ``f32``, for a plugin that must refuse one).
    Return None when the directory is not of a kind the plugin converts; otherwise
    ``(metadata, tensors)`` in GGUF terms: ``metadata`` maps GGUF keys to values
    ``qorus_core.io.gguf.write_gguf`` stores (``general.architecture`` first, no
    ``general.file_type``: convert sets it), ``tensors`` maps GGUF tensor names, in file
    order, to float32 arrays in NumPy shape or to zero-argument callables returning one (so
    a large model is read one tensor at a time). Convert then stores each tensor by its
    rule (2-D weights as ``qtype``, vectors, norms and ``position_embd`` float32) and writes
    the file atomically. A directory the plugin recognizes but cannot convert raises a
    ``QorusError`` naming the file and the field; it reaches the user as it is.
    """


@hookspec
def qorus_register_commands(add_command: Any) -> None:
    """Add ``qorus`` subcommands: call ``add_command(name, help, setup_parser, run)`` (the
    signature of ``qorus_core.cli.add_command``) for each; the llm plugin adds ``generate``
    and ``chat``. Called once when the ``qorus`` command starts, after plugins load, isolated
    and bounded like the registration hooks; the commands are added only if the hook returns.
    A name that is already taken raises ``ValueError``; the failure is reported on stderr and
    the other commands still work. Keep imports of heavy modules inside ``run``.
    """
