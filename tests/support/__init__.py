"""Helpers shared by the tests: signed requests, portals, processes, seeded queues."""
