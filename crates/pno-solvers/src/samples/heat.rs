//! Exact and manufactured solutions for heat (being implemented).
