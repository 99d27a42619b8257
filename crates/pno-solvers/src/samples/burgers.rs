//! Exact and manufactured solutions for burgers (being implemented).
