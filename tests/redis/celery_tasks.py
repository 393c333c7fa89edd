"""The Celery app of tests/redis/test_apps.py: its worker subprocess imports this module
(``celery -A celery_tasks -b URL --result-backend URL worker``); broker and result backend
are given on the command line and, in the test, set on ``app.conf``."""

from __future__ import annotations

from celery import Celery

app = Celery("celery_tasks")
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1,
                worker_hijack_root_logger=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def total(xs: list) -> int:
    return sum(xs)
