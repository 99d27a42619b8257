//! Exact and manufactured solutions for wave (being implemented).
