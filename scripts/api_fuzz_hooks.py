"""Schemathesis hooks for `make api-fuzz`: strategies for the string formats infra/openapi.yaml
declares but JSON Schema cannot spell (a real key, a name in the caller's namespace, a template,
a config.yaml), and the few rules between fields it cannot spell either (each documented where
the body is described): tag keys unique, percents summing to 100, a config's templates sent, a
deployment update named as its path."""

import base64
import os

import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st

ACCOUNT = os.environ["API_FUZZ_ACCOUNT"]
REGISTRY = os.environ["API_FUZZ_REGISTRY"]


def _p256_public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# A few real keys: registering one twice is allowed (the same key answers the same key).
schemathesis.openapi.format("ecdsa-p256-public-key-pem", st.sampled_from([_p256_public_key_pem() for _ in range(3)]))

# A repository below the fuzzing account's namespace (api-fuzz.sh exports it).
_component = st.from_regex(r"\A[a-z0-9]{1,20}(?:[._-][a-z0-9]{1,10}){0,2}\Z")
_relative = st.lists(_component, min_size=1, max_size=3).map("/".join)
schemathesis.openapi.format("own-repository", _relative.map(lambda path: f"{ACCOUNT}/{path}"))
schemathesis.openapi.format("own-namespace", st.just(ACCOUNT))
schemathesis.openapi.format("berth-registry-host", st.just(REGISTRY))

# An image address in Berth's registry and the account's namespace: a tag or a digest.
_reference = st.one_of(
    st.from_regex(r"\A:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z"),
    st.from_regex(r"\A@sha256:[0-9a-f]{64}\Z"),
)
schemathesis.openapi.format(
    "own-image-address",
    st.tuples(_relative, _reference).map(lambda parts: f"{REGISTRY}/{ACCOUNT}/{parts[0]}{parts[1]}"),
)

# What an http health probe asks: a URL the host could fetch.
schemathesis.openapi.format(
    "probe-url",
    st.from_regex(r"\Ahttps?://[a-z0-9]{1,20}(?:\.[a-z]{2,5})?(?::[1-9][0-9]{0,3})?(?:/[A-Za-z0-9._~-]{0,10}){0,3}\Z"),
)

# A template that needs nothing stored: text without identifiers, or one minting a pull key.
_text = st.text(max_size=200).filter(lambda text: "{{" not in text and "}}" not in text)
_template = st.one_of(_text, _text.map(lambda text: text + "\nauth: {{ computenest::acr::dockerconfigjson }}\n"))
schemathesis.openapi.format("berth-template", _template)
schemathesis.openapi.format(
    "berth-template-base64", _template.map(lambda text: base64.b64encode(text.encode()).decode())
)

# config.yaml files; every template they name is at TEMPLATE_URL (map_body below sends it).
TEMPLATE_URL = "templates/app.yaml"
_CONFIGS = [
    f"""Service:
  RegionId: cn-hangzhou
  DeployMetadata:
    TemplateConfigs:
    - Name: app
      Url: {TEMPLATE_URL}
""",
    f"""Service:
  DeployMetadata:
    SupplierDeployMetadata:
      AcrImageArtifactRelation:
        '{{{{ computenest::acrimage::web }}}}':
          ArtifactId: web_pkg
          ArtifactVersion: 1
    TemplateConfigs:
    - Name: app
      Url: {TEMPLATE_URL}
""",
]
schemathesis.openapi.format("compute-nest-config", st.sampled_from(_CONFIGS))


def _positive(case) -> bool:
    meta = case.meta
    return meta is None or str(meta.generation.mode) == "positive"


def _is(case, method: str, path: str) -> bool:
    return case.operation.method.upper() == method and case.operation.path == path


# Case hooks run in every phase (coverage included); only positive cases are shaped, so a
# negative case keeps the violation it was made with.
@schemathesis.hook
def filter_case(context, case) -> bool:
    body = case.body
    if not _positive(case) or not isinstance(body, dict):
        return True
    tags = body.get("tags")
    if (_is(case, "POST", "/v1/packages") or _is(case, "PATCH", "/v1/packages/{name}")) and isinstance(tags, list):
        keys = [str(tag.get("key")) for tag in tags if isinstance(tag, dict)]
        if len(keys) != len(set(keys)):
            return False
    # The fuzzed Berth reaches no AWS: a group naming an Auto Scaling group or a target group
    # is refused there (400 auto_scaling_unavailable, target_groups_unavailable), as documented.
    if _is(case, "POST", "/v1/applications/{app}/groups"):
        balancer = body.get("load_balancer")
        if body.get("auto_scaling_group") is not None or (
            isinstance(balancer, dict) and balancer.get("target_group_arn") is not None
        ):
            return False
    percents = body.get("percents")
    if _is(case, "POST", "/v1/releases") and isinstance(percents, list):
        if all(isinstance(p, int) for p in percents) and sum(percents) != 100:
            return False
    return True


@schemathesis.hook
def map_case(context, case):
    body = case.body
    if not _positive(case) or not isinstance(body, dict):
        return case
    # A config's TemplateConfigs name the templates the body must carry, by Url.
    if _is(case, "PUT", "/v1/services/{id}") and body.get("config") in _CONFIGS:
        case.body = {**body, "templates": {TEMPLATE_URL: "image: app\n"}}
    # A deployment's new revision carries its own name: the path's.
    if _is(case, "PUT", "/v1/applications/{app}/deployments/{name}") and case.path_parameters:
        case.body = {**body, "name": case.path_parameters["name"]}
    return case
