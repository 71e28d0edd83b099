"""A reproducible fuzz harness for Qorus's file formats (GGUF, safetensors, checkpoints,
TOML training configs).

Every case is named by ``(format, seed, index)``: the mutation is a pure function of that
triple and of the seed files built by ``seeds.build_seeds`` (deterministic), so a finding
reproduces with ``python bench/fuzz_formats.py --repro FORMAT:SEED:INDEX``. Cases run through
the real loaders (``targets``) in worker subprocesses (``runner``), so a crash (a signal), a
hang (a per-case timeout) or a memory blow-up (RLIMIT_AS) is caught and attributed to its case.

Modules: ``mutate`` (bytes, boundary values), ``structured`` (JSON/TOML trees and emitters),
``gguf_fields`` (the GGUF layout walker and metadata-level mutations), ``seeds``, ``cases``
(format -> mutated files), ``targets`` (the loaders), ``oracles`` (a load that succeeded
gave what the file asked: no coercion, no duplicate key won), ``worker``, ``runner`` (pool,
report, findings).
"""
