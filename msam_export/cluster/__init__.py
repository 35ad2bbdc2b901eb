"""Running ``segment``, ``verify`` and calibrate's FP32 reference embeddings case by case on a
Ray cluster (the ``ray`` extra: ``pip install 'msam-export[ray]'``).

``Cluster.connect(address, threads)`` joins or starts a cluster; its ``segment``, ``verify``
and ``encoder`` are what the local commands call with ``--ray``. Each Ray actor takes
``threads`` CPUs and opens (OpenVINO: compiles) its models once, then serves one case at a
time; the next case goes to the first actor free. Rows come back in the input order and
match a local run's, plus where they ran.

* Files: by path where a worker sees the driver's files (checked per run and per case),
  else as bytes through the object store (``transfer.py``).
* Faults: a worker process that dies mid-case is restarted by Ray and the case runs again
  on it; a case that fails on its own is reported once, as locally (``dispatch.py``).
* Ctrl-C or an error: the actors are stopped, a cluster started here is shut down, and
  temporary files a killed worker left in the output are removed; outputs are written
  atomically, so none is half-written.
"""

from .core import Cluster, model_path

__all__ = ["Cluster", "model_path"]
