"""Lava backend: builds Lava 0.10 process networks (``Loihi2SimCfg``, ``fixed_pt``) from int parameters.

Custom processes live in ``procs/<name>/`` (``process.py`` + ``models.py`` only, because Lava imports
every module in a process's folder while looking up its models).
"""
