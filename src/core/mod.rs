//! Pure, I/O-free cluster logic: model, store apply, scheduler, orchestrator, restart backoff.
