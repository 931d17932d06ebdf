"""Sweeps: a deterministic plan of cells (``plan``), what the store holds of it (``state``), and the
engines that run its cells: in this process (``local``; also each ``--shard I/N`` of a Slurm job array
or a Kubernetes Indexed Job) or as Ray tasks (``ray``). ``perfkit.api.sweeps`` puts them together.

Named ``sweeps``, not ``sweep``: a subpackage ``perfkit.sweep`` would replace the API function
``perfkit.sweep`` as an attribute of ``perfkit`` once imported (as ``profiler`` leaves ``perfkit.profile`` alone)."""
