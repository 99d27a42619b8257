//! Scheduled health checks with dependency tracking: a failing critical dependency (an unreadable
//! repository) turns readiness false on a real socket within the schedule and back when it
//! recovers, each change audited; free-space and memory thresholds act through real statvfs and
//! RSS readings; a non-critical failure shows in the details without touching readiness; a
//! version answering NaN fails its smoke check (fault-injection builds).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn details(st: &AppState) -> Value {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    let (s, v) = call(st, with_key(get("/v2/admin/health/details"), &key)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn dep<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dependency {name} in {v}"))
}

async fn ready_over_socket(addr: std::net::SocketAddr) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    (text[9..12].parse().unwrap(), text)
}

async fn until_ready(addr: std::net::SocketAddr, want: u16) -> (Duration, String) {
    let t = Instant::now();
    loop {
        let (s, text) = ready_over_socket(addr).await;
        if s == want {
            return (t.elapsed(), text);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "never {want}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_repository_turns_readiness_false_on_schedule_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.path().join("audit").join("audit.log"));
    cfg.health.interval_s = 1;
    std::fs::create_dir_all(dir.path().join("audit")).unwrap();
    let st = state(cfg);
    let (addr, tx, server) = start(&st).await;
    until_ready(addr, 200).await;
    // The first scheduled round may still be running: one more, awaited.
    st.check_dependencies().await;
    let v = details(&st).await;
    for name in [
        "audit",
        "disk:audit",
        "repository",
        "disk:repository",
        "memory",
        "model:pno/1",
    ] {
        assert_eq!(dep(&v, name)["state"], "ok", "{name}: {v}");
    }
    assert_eq!(dep(&v, "repository")["critical"], true);
    assert_eq!(dep(&v, "memory")["critical"], false);

    // The repository folder goes away (a lost mount): within the schedule, not ready, naming it.
    let moved = dir.path().join("repo.gone");
    std::fs::rename(&repo, &moved).unwrap();
    let (took, text) = until_ready(addr, 503).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(text.contains("repository failing"), "{text}");
    let v = details(&st).await;
    let r = dep(&v, "repository");
    assert_eq!(r["state"], "failing");
    assert!(r["error"].as_str().unwrap().contains("cannot read"), "{r}");
    assert!(r["consecutive_failures"].as_u64().unwrap() >= 1);
    assert_eq!(v["ready"], false);
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains(
            "pno_dependency_up{dependency=\"repository\",kind=\"repository\",critical=\"true\",replica=\"t\"} 0"
        ),
        "{m}"
    );
    // Back: ready again.
    std::fs::rename(&moved, &repo).unwrap();
    let (took, _) = until_ready(addr, 200).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Both changes are in the audit log.
    let log = std::fs::read_to_string(dir.path().join("audit").join("audit.log")).unwrap();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"health.dependency\"") && l.contains("\"repository\""))
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes[0].contains("failing: cannot read"),
        "{}",
        changes[0]
    );
    assert!(changes[1].contains("\"outcome\":\"ok\""), "{}", changes[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_act_through_real_readings_and_only_critical_kinds_gate_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    // No disk has an exbibyte free; no process fits in a millionth of its budget.
    cfg.health.min_free_mb = 1 << 40;
    cfg.health.memory_fraction = 1e-6;
    let st = state(cfg);
    st.check_dependencies().await;
    let v = details(&st).await;
    let disk = dep(&v, "disk:repository");
    assert_eq!(disk["state"], "failing");
    assert!(
        disk["error"]
            .as_str()
            .unwrap()
            .contains("below health.min_free_mb"),
        "{disk}"
    );
    let mem = dep(&v, "memory");
    assert_eq!(mem["state"], "failing");
    assert!(
        mem["error"]
            .as_str()
            .unwrap()
            .contains("health.memory_fraction"),
        "{mem}"
    );
    assert!(st.readiness().unwrap_err().contains("disk:repository"));

    // Disk made non-critical: memory is not critical either, so ready, while both still fail.
    let mut cfg = (*st.config()).clone();
    cfg.health.critical = vec!["audit".into(), "repository".into()];
    let st2 = state(cfg);
    st2.check_dependencies().await;
    assert_eq!(st2.readiness(), Ok(()));
    let v = details(&st2).await;
    assert_eq!(dep(&v, "disk:repository")["state"], "failing");
    assert_eq!(dep(&v, "disk:repository")["critical"], false);

    // A bad kind in health.critical is refused, naming the key.
    let mut bad = (*st.config()).clone();
    bad.health.critical = vec!["dsik".into()];
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("health.critical[0]") && e.contains("dsik"),
        "{e}"
    );
    let e = pno_serve::ServeConfig::from_toml_str("[health]\nintervall_s = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("intervall_s"), "{e}");
}

#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_answering_nan_fails_its_smoke_check() {
    let (_d, st) = setup();
    st.check_dependencies().await;
    assert_eq!(dep(&details(&st).await, "model:pno/1")["state"], "ok");
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    let put = axum::http::Request::put("/v2/debug/faults")
        .body(axum::body::Body::from(
            serde_json::json!({"model": "pno", "mode": "nan"}).to_string(),
        ))
        .unwrap();
    assert_eq!(call(&st, with_key(put, &key)).await.0, StatusCode::OK);
    st.check_dependencies().await;
    let v = details(&st).await;
    let m = dep(&v, "model:pno/1");
    assert_eq!(m["state"], "failing", "{v}");
    assert!(m["error"].as_str().unwrap().contains("non-finite"), "{m}");
    // Models are not a critical kind by default: the breaker handles a bad version.
    assert_eq!(st.readiness(), Ok(()));
}
