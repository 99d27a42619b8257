//! Exact and manufactured solutions for ks (being implemented).
