"""facesdk's benchmark scripts, one package: run each from the repository root as
``python -m benchmarks.<name>`` (e.g. ``python -m benchmarks.int8_cpu --help``).

They measure through :mod:`facesdk.bench` (machine info, timing harness, agreement) and make
sessions only through :mod:`facesdk.backends`; :mod:`.common` holds what they share beyond that.
"""
