"""The Dockerfile builds the image every role runs from. No services, no Docker needed."""

from __future__ import annotations

import re

from tests.support.shipping import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_entrypoint_and_user() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["scripts/entrypoint.sh"]' in text
    assert 'CMD ["web"]' in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "FROM python:3.11-slim-bookworm AS runtime" in text
