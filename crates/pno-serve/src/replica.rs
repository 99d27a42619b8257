//! The replica id: which server process of a scaled-out deployment wrote an audit record, signed
//! a checkpoint or exported a metric. Each replica owns its rate limits, lockout and audit log;
//! the id tells their records apart once they are gathered (a log shipper, Prometheus).
//!
//! Sources, first found wins: the config key `replica`, the `PNO_REPLICA` environment variable
//! (a Kubernetes Deployment sets it to the pod name through the downward API), `HOSTNAME`
//! (a pod's name in Kubernetes, set by most shells), the kernel's host name, else `pno-0`. An
//! explicit value (`replica`, `PNO_REPLICA`) that is not a valid id is refused; a host name
//! that is not one (an FQDN over 63 characters) is passed over.

use crate::error::{Result, ServeError};

/// What a replica id must be (for error messages).
pub(crate) const EXPECTED: &str = "1-63 characters of [A-Za-z0-9._-], e.g. the pod name";

/// The id when no source names one.
pub const FALLBACK: &str = "pno-0";

/// The replica id of a server whose config key `replica` is `configured`, reading the
/// environment and the host name when it is absent.
pub fn resolve(configured: Option<&str>) -> Result<String> {
    resolve_from(
        configured,
        std::env::var("PNO_REPLICA").ok().as_deref(),
        std::env::var("HOSTNAME").ok().as_deref(),
        host_name().as_deref(),
    )
}

/// [`resolve`] over explicit sources (config, `PNO_REPLICA`, `HOSTNAME`, host name); an empty
/// variable counts as unset.
pub fn resolve_from(
    config: Option<&str>,
    env: Option<&str>,
    hostname_env: Option<&str>,
    host: Option<&str>,
) -> Result<String> {
    let bad = |key: &str, got: String| ServeError::Config {
        key: key.into(),
        expected: EXPECTED.into(),
        got,
    };
    if let Some(r) = config {
        pno_audit::check_replica(r).map_err(|got| bad("replica", got))?;
        return Ok(r.to_string());
    }
    if let Some(r) = env.filter(|r| !r.is_empty()) {
        pno_audit::check_replica(r).map_err(|got| bad("PNO_REPLICA (environment)", got))?;
        return Ok(r.to_string());
    }
    Ok([hostname_env, host]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|h| pno_audit::check_replica(h).is_ok())
        .unwrap_or(FALLBACK)
        .to_string())
}

/// The kernel's host name (`uname`'s nodename, what `gethostname` returns), else
/// `/etc/hostname`.
fn host_name() -> Option<String> {
    let node = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !node.trim().is_empty() {
        return Some(node);
    }
    std::fs::read_to_string("/etc/hostname").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_order_and_bad_explicit_values_are_refused() {
        let r = |c, e, h, n| resolve_from(c, e, h, n);
        assert_eq!(
            r(Some("cfg"), Some("env"), Some("h"), Some("n")).unwrap(),
            "cfg"
        );
        assert_eq!(r(None, Some("env"), Some("h"), Some("n")).unwrap(), "env");
        assert_eq!(r(None, Some(""), Some("h"), Some("n")).unwrap(), "h");
        assert_eq!(r(None, None, None, Some("node-1\n")).unwrap(), "node-1");
        let long = "a".repeat(64);
        assert_eq!(
            r(None, None, Some(&long), Some("node-1")).unwrap(),
            "node-1"
        );
        assert_eq!(r(None, None, None, None).unwrap(), FALLBACK);
        let e = r(None, Some("a b"), Some("h"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PNO_REPLICA") && e.contains("\"a b\""), "{e}");
        let e = r(Some(&long), None, None, None).unwrap_err().to_string();
        assert!(e.contains("replica") && e.contains("64 characters"), "{e}");
    }
}
