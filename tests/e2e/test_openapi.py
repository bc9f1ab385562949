"""docs/openapi.yaml describes the native API: it validates as OpenAPI 3.1,
and schemathesis, generating requests from it against the live server
through nginx, finds no server error and no response that breaks the
documented schemas."""
import subprocess
import tempfile
from pathlib import Path

import requests
import yaml
from openapi_spec_validator import validate

from conftest import ROOT, Stack

SPEC = ROOT / "docs" / "openapi.yaml"


def test_openapi_document_is_valid():
    document = yaml.safe_load(SPEC.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    assert {"/api/v1/clients", "/api/v1/clients/{id}", "/api/v1/clients/{id}/secret", "/api/v1/clients/{id}/logo",
            "/api/v1/clients/current", "/api/v1/clients/current/secret", "/api/v1/organization", "/api/v1/audit"} <= paths


def test_schemathesis_finds_no_server_errors():
    with tempfile.TemporaryDirectory(prefix="latchkey-st-") as tmp:
        stack = Stack(Path(tmp), rate_limits="off").start()
        try:
            token = stack.token()
            result = subprocess.run(
                ["st", "run", str(SPEC), "--url", stack.base, "-H", f"Authorization: Bearer {token}",
                 "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
                 "--max-examples", "25", "--workers", "1", "--seed", "1", "--warnings", "off"],
                capture_output=True, text=True, timeout=600)
            output = result.stdout + result.stderr
            (ROOT / "test-output").mkdir(exist_ok=True)
            (ROOT / "test-output" / "schemathesis.txt").write_text(output)
            assert result.returncode == 0, output[-4000:]
            # The primary client survived whatever was generated (its secret may have been rotated).
            r = requests.get(stack.url("/api/v1/clients/current"), headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json()["primary"] is True and r.json()["enabled"] is True
        finally:
            stack.stop()
