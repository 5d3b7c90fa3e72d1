"""Labels and annotations on the objects the operator creates for an InferenceService.

The operator stamps them (``sluice.operator.builders``, ``sluice.operator.diffing``) and
watches its children by ``LABEL_INFERENCESERVICE``; the router control plane finds a
variant's pods by ``LABEL_INFERENCESERVICE`` and ``LABEL_COMPONENT``. docs/api.md lists them
for users.
"""

from __future__ import annotations

from typing import Final

from sluice.contracts.api import GROUP

# On every child: the name of the InferenceService it belongs to.
LABEL_INFERENCESERVICE: Final = f"{GROUP}/inferenceservice"
# On a variant's pods and objects: the variant (``PREDICTOR``, ``canary``, an A/B variant).
LABEL_COMPONENT: Final = f"{GROUP}/component"
# The component of the default variant, the one serving when no rollout or test runs.
PREDICTOR: Final = "predictor"
# The component of the router pods (Envoy and its control plane).
ROUTER: Final = "router"

# The Kubernetes recommended labels, also on every child.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_APP_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "sluice"

# On the pod template: a digest of the spec that shapes the pods, so a change rolls them.
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
# On every child: a digest of the object as last applied, compared to skip needless writes.
ANNOTATION_FINGERPRINT: Final = f"{GROUP}/fingerprint"
# On an InferenceService, set by its user: ``promote`` or ``abort`` the rollout in progress.
# The operator acts on it once and removes it.
ANNOTATION_ROLLOUT_ACTION: Final = f"{GROUP}/rollout-action"
