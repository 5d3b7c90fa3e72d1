"""The docker-archive of a one-program image: what ``ctr images import`` reads."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from e2e.cluster import static_images


def members(archive: bytes) -> dict[str, tuple[bytes, int]]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info)
            assert data is not None, f"{info.name} is not a regular file"
            found[info.name] = (data.read(), info.mode)
    return found


def test_archive_names_the_image_and_its_layer_holds_the_program() -> None:
    archive = static_images.docker_archive("sluice.local/x:1", b"\x7fELF program")
    files = members(archive)
    [manifest] = json.loads(files["manifest.json"][0])
    assert manifest["RepoTags"] == ["sluice.local/x:1"]

    config_bytes = files[manifest["Config"]][0]
    assert manifest["Config"] == f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    config = json.loads(config_bytes)
    assert config["config"]["Entrypoint"] == ["/program"]

    [layer_name] = manifest["Layers"]
    layer = files[layer_name][0]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert members(layer) == {"program": (b"\x7fELF program", 0o755)}


def test_archive_is_reproducible() -> None:
    assert static_images.docker_archive("a:1", b"x") == static_images.docker_archive("a:1", b"x")


def test_http_ok_tag_follows_its_source() -> None:
    image = static_images.http_ok()
    digest = hashlib.sha256(image.source.read_bytes()).hexdigest()
    assert image.reference == f"sluice.local/http-ok:{digest[:12]}"
