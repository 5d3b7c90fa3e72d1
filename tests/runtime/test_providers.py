"""Execution-provider choice."""

from __future__ import annotations

import onnxruntime as ort
import pytest
from sluice.runtime.providers import PREFERRED, choose_providers


def test_default_prefers_gpu_providers_that_exist_and_ends_with_cpu() -> None:
    chosen = choose_providers()
    available = ort.get_available_providers()
    assert chosen == [name for name in PREFERRED if name in available]
    assert chosen[-1] == "CPUExecutionProvider"


def test_override_must_be_available() -> None:
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not available"):
        choose_providers(["NoSuchExecutionProvider"])
