"""Schemathesis hooks for `make api-fuzz`: strategies for the string formats infra/openapi.yaml
declares but JSON Schema cannot spell (a real key, a name in the caller's namespace)."""

import os

import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st


def _p256_public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# A few real keys: registering one twice is allowed (the same key answers the same key).
schemathesis.openapi.format("ecdsa-p256-public-key-pem", st.sampled_from([_p256_public_key_pem() for _ in range(3)]))

# A repository below the fuzzing account's namespace (api-fuzz.sh exports it).
_component = st.from_regex(r"\A[a-z0-9]{1,20}(?:[._-][a-z0-9]{1,10}){0,2}\Z")
schemathesis.openapi.format(
    "own-repository",
    st.lists(_component, min_size=1, max_size=3).map(lambda parts: "/".join([os.environ["API_FUZZ_ACCOUNT"], *parts])),
)
