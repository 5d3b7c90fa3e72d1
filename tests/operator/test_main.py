"""Unit tests for the ``sluice-operator`` command line (sluice.operator.__main__)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.operator.__main__ import parse_args
from sluice.operator.pods import DEFAULT_IMAGES


def test_defaults_are_client_go_lease_timings_and_no_kubeconfig() -> None:
    args = parse_args([])
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15.0, 10.0, 2.0)
    assert args.kubeconfig is None  # resolved later like kubectl: $KUBECONFIG, in-cluster, ~
    assert args.namespace == []


def test_shortened_lease_timings() -> None:
    args = parse_args(["--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1"])
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (4.0, 3.0, 1.0)


@pytest.mark.parametrize(
    "timings",
    [
        ["--renew-deadline", "20"],  # longer than the lease: two leaders could act at once
        ["--retry-period", "10"],  # no renewal fits in the renew deadline
        ["--retry-period", "0"],
    ],
)
def test_lease_timings_out_of_order_are_refused(
    timings: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(timings)
    assert raised.value.code == 2
    assert "--retry-period < --renew-deadline < --lease-duration" in capsys.readouterr().err


def test_namespaces_and_kubeconfig(tmp_path: Path) -> None:
    args = parse_args(["-n", "a", "--namespace", "b", "--kubeconfig", str(tmp_path / "k")])
    assert args.namespace == ["a", "b"]
    assert args.kubeconfig == tmp_path / "k"


def test_images_default_to_the_published_ones() -> None:
    args = parse_args([])
    assert (args.runtime_image, args.triton_image) == (
        DEFAULT_IMAGES.runtime,
        DEFAULT_IMAGES.triton,
    )


def test_images_can_be_replaced() -> None:
    args = parse_args(
        ["--runtime-image", "localhost/sluice-runtime:dev", "--triton-image", "localhost/t:1"]
    )
    assert (args.runtime_image, args.triton_image) == (
        "localhost/sluice-runtime:dev",
        "localhost/t:1",
    )


@pytest.mark.parametrize("image", ["", " ", "localhost/sluice-runtime:dev "])
def test_blank_images_are_refused(image: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--runtime-image", image])
    assert raised.value.code == 2
    assert "--runtime-image: not an image reference" in capsys.readouterr().err
