"""persimmon-redis: a Redis-compatible server made persistent by Persimmon."""
