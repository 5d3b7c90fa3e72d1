"""The InferenceService API's identity: group, version, kind and plural.

The CustomResourceDefinition in ``crds/`` declares them; the operator watches and writes
resources by them, and every label and annotation Sluice owns is prefixed with the group.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "serving.sluice.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "InferenceService"
PLURAL: Final = "inferenceservices"
