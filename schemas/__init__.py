"""The Avro schemas (``*.avsc``): this folder is their one source.

The package ships it as ``worker.schemas`` (pyproject.toml maps that package onto this folder),
and the worker reads the files with ``importlib.resources``, so a wheel install and an editable
install find the same files. This file only makes the folder importable under that name.
"""
