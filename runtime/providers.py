"""Execution-provider choice for onnxruntime sessions, decided once when a model is loaded.

TensorRT and CUDA are preferred when the installed onnxruntime offers them (the
``onnxruntime-gpu`` wheel); CPU is always the fallback. ``--providers`` overrides the order.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: Sequence[str] = ()) -> list[str]:
    """Return the providers to ask onnxruntime for, best first.

    With ``requested`` empty, the preferred providers this onnxruntime build offers; otherwise
    exactly ``requested``, which must all be available (a typo should fail at start, not fall
    back silently to CPU).
    """
    available = ort.get_available_providers()
    if not requested:
        return [name for name in PREFERRED if name in available]
    missing = [name for name in requested if name not in available]
    if missing:
        raise ValueError(
            f"execution providers {missing} are not available; this onnxruntime offers {available}"
        )
    return list(requested)
