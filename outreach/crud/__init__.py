"""CRUD functions, one module per resource, each taking the session it works in.

Functions are keyword-only, change the session and flush, and never commit: the caller owns
the transaction (a request's :data:`outreach.api.deps.SessionDep`, or one call of the
:class:`outreach.store.TaskStore` facade the worker, nightly and CLI use). They raise domain
errors (:mod:`outreach.crud.tasks`), never ``HTTPException``.

=========================  ================================================================
module                     resource
=========================  ================================================================
``crud.alerts``            alerts in: one task per root cause (idempotent upsert)
``crud.tasks``             reading tasks, the lifecycle, escalation, counts for metrics
``crud.tokens``            API tokens and page sessions
``crud.customers``         customer profiles used for routing
``crud.webhooks``          the webhook outbox
=========================  ================================================================
"""
