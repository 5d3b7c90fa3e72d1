"""Model-store claims on the local cluster, which has no storage provisioner.

A user with a model store has a PersistentVolumeClaim bound to real storage; here a static
PersistentVolume is made for the claim and bound to it by name. Its storage is a folder of
this machine (``hostPath``), which the real node's pods mount for real, e.g. the models
folder of ``model_store``; pods on kwok nodes never run, so for them the folder never matters,
but the scheduler sees a bound claim exactly as in a cluster with storage.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from e2e.cluster.waiting import wait_for

BIND_TIMEOUT = 60.0  # seconds; the volume controller binds a claim to its named volume in a few


def volume_name(namespace: str, claim: str) -> str:
    """The cluster-wide PersistentVolume made for ``namespace/claim``."""
    return f"{namespace}-{claim}"


def provide_claim(
    api: client.ApiClient, namespace: str, claim: str, folder: Path | None = None
) -> str:
    """Create a claim and the static volume it binds to, unless they exist, and wait until the
    claim is Bound, as a user's claim is before it is used: a pod created while its claim is
    still unbound is marked unschedulable, and the scheduler may retry it only minutes later.
    The volume's storage is ``folder`` (by default a path no pod reads). Returns the volume."""
    core = client.CoreV1Api(api)
    volume = volume_name(namespace, claim)
    path = str(folder) if folder is not None else f"/srv/{volume}"
    bodies = (
        (
            core.create_persistent_volume,
            (),
            {
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "hostPath": {"path": path},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            },
        ),
        (
            core.create_namespaced_persistent_volume_claim,
            (namespace,),
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ),
    )
    for create, args, body in bodies:
        try:
            create(*args, body)
        except client.ApiException as error:
            if error.status != 409:
                raise
    wait_for(
        lambda: (
            core.read_namespaced_persistent_volume_claim(claim, namespace).status.phase == "Bound"
        ),
        timeout=BIND_TIMEOUT,
        what=f"claim {namespace}/{claim} to be Bound",
    )
    return volume
