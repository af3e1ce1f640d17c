"""Safe loading of other toolkits' PyTorch pickles (``.pt`` / ``.pth``).

Checkpoints from fairseq, XLM / MASS and LASER are pickles: unpickling them with Python's
``pickle`` can run any code the file names. :func:`load_checkpoint_pickle` reads them only with
``torch.load(weights_only=True)`` (tensors, containers, numbers, strings) plus an explicit
allow-list of harmless globals, chosen per format from the groups in :data:`ALLOW_GROUPS`:

``namespace``  ``argparse.Namespace``. fairseq <= 0.10 stores its ``args`` as one; fairseq
               0.10 - 0.12 stores ``cfg`` as a plain dict (``OmegaConf.to_container(...)`` in
               ``Trainer.state_dict``) whose ``model`` / ``task`` / ``criterion`` / ``optimizer``
               / ``lr_scheduler`` sections are Namespaces when the component was registered
               without a dataclass (``convert_namespace_to_omegaconf``: the ``transformer`` arch
               is, see ``transformer_legacy.py``). LASER3 files are such fairseq checkpoints
               (``laser_encoders`` reads ``state_dict["cfg"]["model"].prepend_bos``).
``numpy``      numeric numpy arrays and scalars (no object or string dtypes). XLM and MASS save
               ``params`` as a plain dict of their argparse values (``trainer.save_checkpoint``:
               ``{k: v for k, v in self.params.__dict__.items()}``), which holds
               ``params.mask_scores``, a float64 ndarray (and ``pred_probs``, a tensor).
               Files from numpy 1.x name ``numpy.core.multiarray``, newer ones ``numpy._core``:
               both are accepted.

LASER2 needs neither: its ``params`` is a dict (``LaserLstmEncoder(**state_dict["params"])``).
XLM's ``AttrDict`` is never pickled (XLM wraps the loaded dict in it), so a file naming
``src.utils.AttrDict`` is refused like any other global. fairseq checkpoints written between
the Hydra port (Oct 2020) and March 2021 on fairseq's main branch store ``cfg`` as an omegaconf
``DictConfig``: omegaconf classes are never allowed; the error says how to re-save such a file.

Never falls back to ``weights_only=False``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xling.errors import XlingError

ALLOW_GROUPS = {
    "namespace": "argparse.Namespace (fairseq args / cfg sections, LASER3)",
    "numpy": "numeric numpy arrays and scalars (XLM / MASS params)",
}
FAIRSEQ = ("namespace",)  # fairseq checkpoints (translation models, LASER3)
XLM = ("numpy",)  # original XLM / MASS checkpoints
LASER2 = ()  # LASER2 BiLSTM: params, model and dictionary are dicts and tensors
MIN_TORCH = "2.6"  # safe_globals with (global, "module.name") entries

_NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                   "float16", "float32", "float64")


def _group(name: str) -> list[Any]:
    """The allow-list entries of one group: globals, or (global, "module.name") pairs."""
    if name == "namespace":
        import argparse

        return [argparse.Namespace]
    if name == "numpy":
        import numpy as np

        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray  # type: ignore[no-redef]
        out: list[Any] = [np.ndarray, np.dtype]
        out += [type(np.dtype(t)) for t in _NUMERIC_DTYPES]  # dtype instances are built (BUILD) as these
        for fn in ("_reconstruct", "scalar"):
            out += [(getattr(multiarray, fn), f"{mod}.multiarray.{fn}") for mod in ("numpy.core", "numpy._core")]
        return out
    raise ValueError(f"unknown allow group {name!r}; known: {', '.join(ALLOW_GROUPS)}")


def allowed_globals(allow: Iterable[str]) -> list[Any]:
    """The entries for ``torch.serialization.safe_globals`` of the groups ``allow``."""
    return [g for name in allow for g in _group(name)]


def _refusal(path: Path, message: str) -> XlingError | None:
    """A one-line error for a weights-only refusal (``message`` is torch's), or None when the
    message says the bytes are not a pickle torch can read at all."""
    m = re.search(r"GLOBAL (\S+)", message) or re.search(r"but got <class '([^']+)'>", message)
    if not m:
        return None
    name = m[1]
    if name.startswith("omegaconf."):
        return XlingError(f"{path}: stores its config as omegaconf objects ({name}; fairseq main branch, "
                          "Oct 2020 - Mar 2021), which xling does not unpickle; re-save it with fairseq 0.12 "
                          "(cfg as a plain dict: OmegaConf.to_container)")
    return XlingError(f"{path}: refused: the pickle needs {name}, which is not on this format's allow-list "
                      "(unpickling it could run code)")


def load_checkpoint_pickle(path: str | os.PathLike, allow: Iterable[str] = FAIRSEQ) -> dict:
    """Load the dict pickled in ``path`` (on the CPU), allowing only the globals of the groups
    ``allow`` (keys of :data:`ALLOW_GROUPS`). A missing, unreadable, truncated or corrupt file,
    a pickle that needs any other global and one that holds no dict are one-line XlingErrors."""
    path = Path(path)
    if not path.exists():
        raise XlingError(f"{path}: no such file")
    if path.is_dir():
        raise XlingError(f"{path}: is a directory, expected a checkpoint file (.pt / .pth)")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise XlingError(f"{path}: cannot read ({(e.strerror or str(e)).lower()})") from None
    if empty:
        raise XlingError(f"{path}: empty file, not a checkpoint")
    import torch
    from torch.torch_version import TorchVersion

    if TorchVersion(torch.__version__) < MIN_TORCH:
        raise XlingError(f"{path}: reading checkpoints safely needs torch >= {MIN_TORCH} "
                         f"(installed: {torch.__version__})")
    safe = allowed_globals(allow)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(safe):
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": not the user's concern
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise (_refusal(path, str(e)) or _corrupt(path)) from None
    except Exception:  # torch reports damaged files as RuntimeError, KeyError, struct.error, EOFError ...
        raise _corrupt(path) from None
    if not isinstance(obj, dict):
        raise XlingError(f"{path}: holds a {type(obj).__name__}, not a checkpoint (a dict of entries)")
    return obj


def _corrupt(path: Path) -> XlingError:
    return XlingError(f"{path}: not a readable checkpoint (truncated or corrupt)")
