"""Process entry points besides the web: RQ worker, release clock, scheduler, health check."""
