"""A local HTTP server that behaves like HubSpot, for the test suite and the local sandbox.

Standard library only. See ``FakeHubSpot`` for the Python API and ``fake_hubspot.control`` for
the ``/_fake/`` HTTP API.
"""

from fake_hubspot.server import FakeHubSpot
from fake_hubspot.settings import Settings

__all__ = ["FakeHubSpot", "Settings"]
