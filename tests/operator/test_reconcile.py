"""Unit tests for sluice.operator.reconcile: one run's writes, read from the cache, against
an in-memory API (``fakekube.FakeKube``). The same behaviours are proven against the real API
server in tests/integration/test_reconcile.py."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from fakekube import FakeKube, ready_pod
from sluice.contracts.labels import LABEL_INFERENCESERVICE as LABEL
from sluice.operator import pods, reconcile, spec
from sluice.operator.cache import Cache
from sluice.operator.errors import PermanentError, TemporaryError
from sluice.operator.providers import Providers
from sluice.operator.reconcile import Key, ProviderSource, Reconciler, Result
from sluice.operator.workqueue import WorkQueue

NS = "models"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
RUNS = 5  # more than any object needs in a row
GPU_SHORTFALL = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
CPU = "CPUExecutionProvider"


class World:
    """A FakeKube, the operator's cache of it, and a reconciler reading that cache."""

    def __init__(
        self, images: pods.Images = pods.DEFAULT_IMAGES, providers: ProviderSource | None = None
    ) -> None:
        self.kube = FakeKube()
        self.cache = Cache(LABEL)
        self.reconciler = Reconciler(
            self.kube,
            self.cache,
            images=images,
            clock=lambda: T0,
            instance="test",
            providers=providers,
        )

    def create(self, name: str, **spec_fields: Any) -> dict[str, Any]:
        body = {
            "apiVersion": spec.API_VERSION,
            "kind": spec.KIND,
            "metadata": {"name": name, "namespace": NS},
            "spec": {"model": {"uri": "file:///models/mlp.onnx"}, **spec_fields},
        }
        created = self.kube.put(body)
        self.sync()
        return created

    def sync(self) -> None:
        """Let the operator's watch catch up with everything written so far."""
        self.kube.deliver(self.cache)

    def run(self, name: str) -> Result:
        """Reconcile ``name`` as the work queue would: again at once while a run asks for it
        (``requeue_after`` 0), the watch catching up after each; ``kube.writes`` holds the
        writes of them all."""
        self.kube.writes.clear()
        for _ in range(RUNS):
            result = self.reconciler.reconcile((NS, name))
            self.sync()
            if result.requeue_after != 0:
                return result
        raise AssertionError(f"{name} still asks to run again after {RUNS} runs")

    def obj(self, api_version: str, kind: str, name: str) -> dict[str, Any]:
        found = self.kube.get(api_version, kind, NS, name)
        assert found is not None, f"{kind} {name} does not exist"
        return found

    def isvc(self, name: str) -> dict[str, Any]:
        return self.obj(spec.API_VERSION, spec.KIND, name)

    def conditions(self, name: str) -> dict[str, tuple[str, str]]:
        return {
            c["type"]: (c["status"], c["reason"]) for c in self.isvc(name)["status"]["conditions"]
        }

    def roll_out(self, name: str, replicas: int = 1) -> None:
        """Report the Deployment rolled out, as the Deployment controller would."""
        deployment = self.obj("apps/v1", "Deployment", f"{name}-predictor")
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        self.kube.put(deployment)
        self.sync()


@pytest.fixture
def world() -> World:
    return World()


def test_runtime_pods_run_the_images_the_reconciler_was_given() -> None:
    local = pods.Images(runtime="localhost/sluice-runtime:dev", triton="localhost/triton:dev")
    world = World(local)
    world.create("mlp", model={"uri": "https://models.example/mlp.onnx"})
    world.run("mlp")
    pod = world.obj("apps/v1", "Deployment", "mlp-predictor")["spec"]["template"]["spec"]
    assert [c["image"] for c in [*pod["initContainers"], *pod["containers"]]] == [
        local.runtime,
        local.runtime,
    ]


def test_create_takes_two_applies_and_one_status_write(world: World) -> None:
    world.create("mlp", replicas=2, resources={"gpus": 1})
    assert world.run("mlp") == Result()
    assert world.kube.writes == [
        ("apply", "Deployment", "mlp-predictor"),
        ("apply", "Service", "mlp"),
        ("patch_status", "InferenceService", "mlp"),
    ]
    status = world.isvc("mlp")["status"]
    assert (status["replicas"], status["readyReplicas"], status["gpus"]) == (2, 0, 2)
    assert world.conditions("mlp")["Ready"] == ("False", "RolloutInProgress")
    deployment = world.obj("apps/v1", "Deployment", "mlp-predictor")
    assert deployment["spec"]["replicas"] == 2
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == world.isvc("mlp")["metadata"]["uid"]


def test_a_run_creates_one_child_and_runs_again_for_the_next(world: World) -> None:
    world.create("mlp")
    first = world.reconciler.reconcile((NS, "mlp"))
    # The Deployment first; the Service, whose ClusterIP the API server allocates one at a
    # time, waits for a run behind whatever else is queued, and so does status.
    assert first == Result(requeue_after=0.0)
    assert world.kube.writes == [("apply", "Deployment", "mlp-predictor")]
    world.kube.writes.clear()
    assert world.reconciler.reconcile((NS, "mlp")) == Result()
    assert world.kube.writes == [
        ("apply", "Service", "mlp"),
        ("patch_status", "InferenceService", "mlp"),
    ]


def test_a_child_already_there_is_updated_in_the_run_that_creates_another(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    world.kube.delete(
        "v1", "Service", NS, "mlp", uid=world.obj("v1", "Service", "mlp")["metadata"]["uid"]
    )
    isvc = world.isvc("mlp")
    isvc["spec"]["replicas"] = 3
    world.kube.put(isvc)
    world.sync()
    world.kube.writes.clear()
    assert world.reconciler.reconcile((NS, "mlp")) == Result()
    assert world.kube.writes_of("apply") == [("Deployment", "mlp-predictor"), ("Service", "mlp")]


def test_a_second_run_writes_nothing(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    world.run("mlp")
    assert world.kube.writes == []
    world.roll_out("mlp")
    world.run("mlp")
    assert world.kube.writes_of("patch_status") == [("InferenceService", "mlp")]
    world.run("mlp")
    assert world.kube.writes == []


def test_a_run_before_the_watch_catches_up_does_not_write_again(world: World) -> None:
    world.create("mlp")
    for _ in range(RUNS):  # without the watch catching up in between
        if world.reconciler.reconcile((NS, "mlp")).requeue_after != 0:
            break
    world.kube.writes.clear()
    # Nothing delivered: the cache knows the writes only from their responses.
    world.reconciler.reconcile((NS, "mlp"))
    assert world.kube.writes == []
    world.sync()  # the stale watch events arrive last and change nothing
    world.reconciler.reconcile((NS, "mlp"))
    assert world.kube.writes == []


def test_events_only_on_transitions(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    assert world.kube.writes_of("create") == []  # no event per child created
    world.roll_out("mlp")
    world.run("mlp")
    assert world.conditions("mlp")["Ready"] == ("True", "Available")
    ((_, reason, _),) = _events(world)
    assert reason == "Ready"
    world.run("mlp")
    assert world.kube.writes == []


def test_drift_is_repaired(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    deployment = world.obj("apps/v1", "Deployment", "mlp-predictor")
    deployment["spec"]["replicas"] = 5
    world.kube.put(deployment)
    world.sync()
    world.run("mlp")
    assert world.kube.writes == [("apply", "Deployment", "mlp-predictor")]
    assert world.obj("apps/v1", "Deployment", "mlp-predictor")["spec"]["replicas"] == 1


def test_a_spec_change_is_applied(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    isvc = world.isvc("mlp")
    isvc["spec"]["replicas"] = 3
    world.kube.put(isvc)
    world.sync()
    world.run("mlp")
    assert world.kube.writes == [
        ("apply", "Deployment", "mlp-predictor"),
        ("patch_status", "InferenceService", "mlp"),
    ]
    assert world.obj("apps/v1", "Deployment", "mlp-predictor")["spec"]["replicas"] == 3
    assert world.isvc("mlp")["status"]["observedGeneration"] == 2


def test_children_no_longer_desired_are_deleted(world: World) -> None:
    world.create("mlp")
    world.run("mlp")
    uid = world.isvc("mlp")["metadata"]["uid"]
    predictor = world.obj("apps/v1", "Deployment", "mlp-predictor")
    labels = predictor["metadata"]["labels"]
    # A variant the builders no longer emit, owned by this InferenceService.
    world.kube.put(_child("apps/v1", "Deployment", "mlp-canary", labels, owner_uid=uid))
    world.kube.put(_child("v1", "Service", "mlp-canary", labels, owner_uid=uid))
    # Labelled alike but controlled by someone else, or of a kind the operator does not manage.
    world.kube.put(_child("apps/v1", "Deployment", "mlp-other", labels, owner_uid="not-mlp"))
    world.kube.put(_child("v1", "Secret", "mlp-config", labels, owner_uid=uid))
    world.sync()

    world.run("mlp")
    assert sorted(world.kube.writes_of("delete")) == [
        ("Deployment", "mlp-canary"),
        ("Service", "mlp-canary"),
    ]
    labelled = world.kube.list("apps/v1", "Deployment", NS, label_selector=f"{LABEL}=mlp")
    assert [d["metadata"]["name"] for d in labelled] == ["mlp-other", "mlp-predictor"]
    assert world.kube.get("v1", "Secret", NS, "mlp-config") is not None
    world.run("mlp")
    assert world.kube.writes == []


def test_an_autoscaled_deployment_keeps_the_autoscalers_replicas(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spec.autoscaling is not in the CRD yet: set it on the parsed value.
    parse = spec.parse
    autoscaling = spec.AutoscalingSpec(engine="sluice")

    def parse_autoscaled(body: Any) -> spec.InferenceService:
        return dataclasses.replace(parse(body), autoscaling=autoscaling)

    monkeypatch.setattr(spec, "parse", parse_autoscaled)
    world.create("mlp", replicas=1)
    world.run("mlp")
    deployment = world.obj("apps/v1", "Deployment", "mlp-predictor")
    assert "replicas" not in deployment["spec"]
    deployment["spec"]["replicas"] = 4  # the autoscaler's decision
    world.kube.put(deployment)
    world.sync()
    world.roll_out("mlp", replicas=4)

    world.run("mlp")
    assert world.kube.writes_of("apply") == []
    assert world.obj("apps/v1", "Deployment", "mlp-predictor")["spec"]["replicas"] == 4
    status = world.isvc("mlp")["status"]
    assert (status["replicas"], status["readyReplicas"]) == (4, 4)
    assert world.conditions("mlp")["Ready"] == ("True", "Available")


def test_unschedulable_pods_are_read_from_the_cache(world: World) -> None:
    world.create("mlp", resources={"gpus": 16})
    world.run("mlp")
    world.kube.put(_stuck_pod("mlp-predictor-abc", "mlp", gpus=16))
    world.sync()
    world.run("mlp")
    assert world.conditions("mlp")["PodsScheduled"] == ("False", "Unschedulable")
    assert world.conditions("mlp")["Ready"] == ("False", "Unschedulable")
    ((_, reason, note),) = _events(world)
    assert reason == "Unschedulable"
    assert "16 nvidia.com/gpu" in note


def test_a_rejected_child_is_reported_and_the_others_applied(world: World) -> None:
    world.create("mlp")
    world.kube.fail("apply", "Deployment", PermanentError("rejected (422): bad affinity"))
    world.run("mlp")
    assert world.kube.writes_of("apply") == [("Service", "mlp")]
    assert world.conditions("mlp")["Reconciled"] == ("False", "ApplyFailed")
    assert world.conditions("mlp")["Ready"] == ("False", "ApplyFailed")
    assert [reason for _, reason, _ in _events(world)] == ["ApplyFailed"]

    world.run("mlp")  # accepted this time
    assert world.kube.writes_of("apply") == [("Deployment", "mlp-predictor")]
    assert world.conditions("mlp")["Reconciled"] == ("True", "Applied")


def test_a_temporary_failure_is_raised_for_the_queue_to_retry(world: World) -> None:
    world.create("mlp")
    world.kube.fail("apply", "Service", TemporaryError("throttled", delay=7.0))
    with pytest.raises(TemporaryError) as raised:
        world.run("mlp")
    assert raised.value.delay == 7.0
    world.run("mlp")
    assert world.kube.writes_of("apply") == [("Service", "mlp")]


def test_an_invalid_spec_is_reported_without_children(world: World) -> None:
    world.create("bad", replicas=-1)
    world.run("bad")
    assert world.kube.writes == [
        ("patch_status", "InferenceService", "bad"),
        ("create", "Event", ""),
    ]
    assert world.conditions("bad")["SpecValid"] == ("False", "InvalidSpec")
    assert [reason for _, reason, _ in _events(world)] == ["InvalidSpec"]


def test_an_object_not_in_the_cache_is_left_alone(world: World) -> None:
    assert world.run("gone") == Result()
    assert world.kube.writes == []


class Runtimes:
    """Runtime pods by address, answering with a provider or failing, behind real
    ``Providers`` whose queue the test drains by hand (``work``)."""

    def __init__(self, **answers: str | Exception) -> None:
        self.answers = {host.replace("_", "."): answer for host, answer in answers.items()}
        self.queue: WorkQueue[str] = WorkQueue()
        self.woken: list[Key] = []
        self.providers = Providers(self.queue, self._provider, self.woken.append)

    def work(self) -> None:
        """Ask every queued pod once; a failure is left for a retry that never comes."""
        while (uid := self.queue.get(timeout=0)) is not None:
            try:
                self.providers.ask(uid)
            except TemporaryError:
                pass
            finally:
                self.queue.done(uid)

    def _provider(self, host: str, port: int, model: str) -> str | None:
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_status_shows_the_provider_the_pods_report() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU, "10_0_0_2": TemporaryError("timed out", delay=0)})
    world = World(providers=runtimes.providers)
    world.create("mlp", resources={"gpus": 1})
    world.run("mlp")
    world.roll_out("mlp")
    world.kube.put(ready_pod("mlp-predictor-a", NS, "mlp", "10.0.0.1"))
    world.sync()
    world.run("mlp")
    assert "provider" not in world.isvc("mlp")["status"]  # a run never waits for a pod

    runtimes.work()
    assert runtimes.woken == [(NS, "mlp")]
    world.run("mlp")
    assert world.kube.writes == [("patch_status", "InferenceService", "mlp")]
    assert world.isvc("mlp")["status"]["provider"] == CPU
    world.run("mlp")
    assert world.kube.writes == []

    # The pod is replaced by one the operator cannot reach: what was learned stays.
    world.kube.delete(
        "v1",
        "Pod",
        NS,
        "mlp-predictor-a",
        uid=world.obj("v1", "Pod", "mlp-predictor-a")["metadata"]["uid"],
    )
    world.kube.put(ready_pod("mlp-predictor-b", NS, "mlp", "10.0.0.2"))
    world.sync()
    world.run("mlp")
    runtimes.work()
    world.run("mlp")
    assert world.kube.writes == []
    assert world.isvc("mlp")["status"]["provider"] == CPU


def test_triton_pods_are_not_asked_and_show_no_provider() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU})
    world = World(providers=runtimes.providers)
    world.create("mlp")
    world.run("mlp")
    world.kube.put(ready_pod("mlp-predictor-a", NS, "mlp", "10.0.0.1"))
    world.sync()
    world.run("mlp")
    runtimes.work()
    world.run("mlp")
    assert world.isvc("mlp")["status"]["provider"] == CPU

    isvc = world.isvc("mlp")
    isvc["spec"]["runtime"] = {"engine": "triton"}
    world.kube.put(isvc)
    world.sync()
    world.run("mlp")
    assert "provider" not in world.isvc("mlp")["status"]
    world.kube.put(ready_pod("mlp-predictor-b", NS, "mlp", "10.0.0.1"))
    world.sync()
    world.run("mlp")
    assert len(runtimes.queue) == 0


def test_a_deleted_inferenceservice_forgets_its_pods() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU})
    world = World(providers=runtimes.providers)
    world.create("mlp")
    world.run("mlp")
    pod = world.kube.put(ready_pod("mlp-predictor-a", NS, "mlp", "10.0.0.1"))
    world.sync()
    world.run("mlp")
    runtimes.work()
    assert runtimes.providers.observe((NS, "mlp"), "mlp", [pod]) == {"predictor": (CPU,)}
    isvc = world.isvc("mlp")
    world.kube.delete(spec.API_VERSION, spec.KIND, NS, "mlp", uid=isvc["metadata"]["uid"])
    world.sync()
    world.run("mlp")
    assert runtimes.providers.observe((NS, "mlp"), "mlp", [pod]) == {}


def _events(world: World) -> list[tuple[str, str, str]]:
    """(type, reason, note) of every Event the operator posted."""
    return [
        (obj["type"], obj["reason"], obj["note"])
        for (_, kind, _, _), obj in world.kube.objects.items()
        if kind == "Event" and obj["reportingController"] == reconcile.REPORTING_CONTROLLER
    ]


def _child(
    api_version: str, kind: str, name: str, labels: dict[str, str], *, owner_uid: str
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": spec.API_VERSION,
                    "kind": spec.KIND,
                    "name": "mlp",
                    "uid": owner_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {},
    }


def _stuck_pod(name: str, owner: str, *, gpus: int) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {LABEL: owner}},
        "spec": {"containers": [{"name": "runtime", "resources": {"limits": limits}}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": GPU_SHORTFALL,
                }
            ],
        },
    }
