//! In-process alerting on a served socket (fault-injection builds): steady load raises nothing;
//! an injected latency shift fires `LatencyAnomaly` and its notification reaches a real local
//! webhook receiver (after a 503 it retries), the resolve follows when the fault is removed; an
//! injected error burst fires the critical `ErrorRateAnomaly`; both are audited and listed at
//! the admin endpoints; a receiver that is down never slows requests and its failures are
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

fn alerting_config(dir: &Path, url: &str) -> ServeConfig {
    let repo = repo(dir, "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.join("audit.log"));
    cfg.alerting = toml::from_str(&format!(
        r#"
        window_s = 1
        warmup_windows = 5
        baseline_windows = 20
        for_windows = 2
        resolve_windows = 2
        min_requests = 3
        latency_tolerance = 2.0
        group_wait_s = 0
        [[receivers]]
        name = "oncall"
        url = "{url}"
        min_severity = "warning"
        "#
    ))
    .unwrap();
    cfg.alerting.validate().unwrap();
    cfg
}

/// Four clients, each sending an inference request every 100 ms after its answer, until
/// stopped (so slow answers lower the rate but never stop it); the statuses seen.
fn load(st: &AppState, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    let st = st.clone();
    tokio::spawn(async move {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (st, stop) = (st.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    let body = infer_body(&input(1), 1, json!({"n_samples": 2, "seed": 3}));
                    while !stop.load(Ordering::SeqCst) {
                        let r = send(&st, post_json("/v2/models/pno/infer", &body)).await;
                        statuses.push(r.status().as_u16());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    statuses
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.unwrap());
        }
        all
    })
}

async fn fault(st: &AppState, v: Value) {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    let r = axum::http::Request::put("/v2/debug/faults")
        .body(Body::from(v.to_string()))
        .unwrap();
    let (s, b) = call(st, with_key(r, &key)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn admin_get(st: &AppState, path: &str) -> (StatusCode, Value) {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    call(st, with_key(get(path), &key)).await
}

/// The next notification the receiver got, parsed, within `limit`.
async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    limit: Duration,
) -> Option<Value> {
    let b = tokio::time::timeout(limit, rx.recv()).await.ok()??;
    Some(serde_json::from_str(&b).unwrap())
}

fn alerts_of(n: &Value) -> Vec<(String, String, String)> {
    n["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_string(),
                a["labels"]["signal"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_error_shifts_alert_reach_the_receiver_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, mut rx) = receiver(1, None).await;
    let st = state(alerting_config(
        dir.path(),
        &format!("http://{hook}/alerts"),
    ));
    let (_addr, tx, server) = start(&st).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&st, stop.clone());
    let loading = Instant::now();

    // Steady load past the warm-up: nothing fires, nothing is sent.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (s, v) = admin_get(&st, "/v2/admin/alerts").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["firing"].as_array().unwrap().is_empty(),
        "steady load fired: {v}"
    );
    let judged = v["detectors"].as_array().unwrap();
    assert!(
        judged
            .iter()
            .any(|d| d["signal"] == "latency_p50" && d["windows"].as_u64() >= Some(5)),
        "{v}"
    );
    assert!(next(&mut rx, Duration::from_millis(10)).await.is_none());

    // Latency shift: every call 250 ms slower.
    let t = Instant::now();
    fault(&st, json!({"model": "pno", "mode": "slow", "ms": 250})).await;
    let n = next(&mut rx, Duration::from_secs(15))
        .await
        .expect("no latency alert delivered");
    let delay = t.elapsed();
    assert_eq!(n["version"], "4");
    assert_eq!(n["status"], "firing");
    assert_eq!(n["receiver"], "oncall");
    assert_eq!(n["groupLabels"]["model"], "pno");
    let got = alerts_of(&n);
    assert!(
        got.iter()
            .all(|(name, _, st)| name == "LatencyAnomaly" && st == "firing"),
        "{n}"
    );
    // Two 1 s windows, judged a second after each ends, plus one retry after the 503.
    assert!(delay < Duration::from_secs(8), "{delay:?}");
    let a = &n["alerts"][0];
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("latency"),
        "{a}"
    );
    assert_eq!(a["labels"]["severity"], "warning");
    let (_, v) = admin_get(&st, "/v2/admin/alerts").await;
    assert!(!v["firing"].as_array().unwrap().is_empty(), "{v}");
    // The receiver has the notification before the sender has read the 200 and counted it as
    // delivered: give the count a moment (bounded) to catch up.
    let delivered =
        "pno_alert_notifications_total{receiver=\"oncall\",outcome=\"delivered\",replica=\"t\"} 1";
    let until = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
        if m.contains(delivered) || Instant::now() > until {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        m.contains(
            "pno_alerts_firing{alertname=\"LatencyAnomaly\",severity=\"warning\",replica=\"t\"}"
        ),
        "{m}"
    );
    assert!(m.contains(
        "pno_anomaly_score{model=\"pno\",version=\"1\",signal=\"latency_p50\",replica=\"t\"}"
    ));
    assert!(m.contains(delivered), "{m}");

    // The fault ends: the resolve is delivered (the same group, status resolved).
    fault(&st, json!({"model": "pno", "mode": "off"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let resolved = loop {
        let n = next(&mut rx, deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("no resolve delivered");
        if n["status"] == "resolved" {
            break n;
        }
    };
    assert!(
        alerts_of(&resolved)
            .iter()
            .all(|(name, _, st)| name == "LatencyAnomaly" && st == "resolved")
    );
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    // An error burst: half the calls fail (transient): the critical error-rate alert.
    fault(&st, json!({"model": "pno", "mode": "flaky", "p": 0.6})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let errors = loop {
        let n = next(&mut rx, deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("no error-rate alert delivered");
        if alerts_of(&n)
            .iter()
            .any(|(name, _, st)| name == "ErrorRateAnomaly" && st == "firing")
        {
            break n;
        }
    };
    let e = errors["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "ErrorRateAnomaly")
        .unwrap();
    assert_eq!(e["labels"]["severity"], "critical");
    fault(&st, json!({"model": "pno", "mode": "off"})).await;
    stop.store(true, Ordering::SeqCst);
    let statuses = loader.await.unwrap();
    assert!(
        statuses.iter().filter(|s| **s == 200).count() > 100,
        "{}",
        statuses.len()
    );

    // The series endpoint shows the traffic; bad queries are 4xx naming what is wrong.
    let (s, v) = admin_get(&st, "/v2/admin/series").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["series"][0], json!({"model": "pno", "version": "1"}));
    let (s, v) = admin_get(&st, "/v2/admin/series?model=pno&last=30").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let points = v["points"].as_array().unwrap();
    // One point per second of traffic: all but the partial first and last second of the load,
    // however quickly the alerts above came (at least the 9 s steady phase and the three shifts).
    let seconds = loading.elapsed().as_secs() as usize;
    assert!(
        points.len() + 2 >= seconds && points.len() >= 12,
        "{seconds} s: {v}"
    );
    assert!(
        points
            .iter()
            .any(|p| p["errors"]["transient"].as_u64() > Some(0)),
        "{v}"
    );
    assert!(
        points
            .iter()
            .filter(|p| p["requests"].as_u64() > Some(0))
            .all(|p| p["latency_p50"].as_f64() > Some(0.0)),
        "{v}"
    );
    let (s, v) = admin_get(&st, "/v2/admin/series?model=pno&resolution=1m").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin_get(&st, "/v2/admin/series?model=pno&resolution=5s").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("1s or 1m"), "{v}");
    let (s, _) = admin_get(&st, "/v2/admin/series?model=nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = admin_get(&st, "/v2/admin/series?modle=pno").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A reader may not see them.
    let (key, _) = st.keys().create(pno_serve::auth::Role::Reader).unwrap();
    let (s, _) = call(&st, with_key(get("/v2/admin/alerts"), &key)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Every firing and resolve is in the audit log.
    let log = audit_log_with(
        &dir.path().join("audit.log"),
        &[
            "\"alert.firing\"",
            "LatencyAnomaly",
            "\"alert.resolved\"",
            "ErrorRateAnomaly (critical)",
        ],
    )
    .await;
    assert!(
        log.contains("\"alert.firing\"") && log.contains("LatencyAnomaly"),
        "{log}"
    );
    assert!(log.contains("\"alert.resolved\""));
    assert!(log.contains("ErrorRateAnomaly (critical)"));
    let _ = tx.send(());
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_costs_requests_nothing_and_its_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = alerting_config(dir.path(), &format!("http://127.0.0.1:{port}/"));
    cfg.alerting.warmup_windows = 3;
    cfg.alerting.rules = toml::from_str::<pno_serve::alerting::AlertingConfig>(
        "[[rules]]\nname = \"AnyTraffic\"\nsignal = \"request_rate\"\nabove = 1\nseverity = \"critical\"\nrunbook = \"none needed\"",
    )
    .unwrap()
    .rules;
    let st = state(cfg);
    let (_addr, tx, server) = start(&st).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&st, stop.clone());
    let t = Instant::now();
    let metrics = loop {
        let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
        if m.contains("receiver=\"oncall\",outcome=\"failed\"") {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no failed delivery counted: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        metrics.contains(
            "pno_alerts_firing{alertname=\"AnyTraffic\",severity=\"critical\",replica=\"t\"} 1"
        ),
        "{metrics}"
    );
    stop.store(true, Ordering::SeqCst);
    let statuses = loader.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (_, v) = admin_get(&st, "/v2/admin/alerts").await;
    assert_eq!(v["firing"][0]["runbook"], "none needed", "{v}");
    assert!(v["receivers"][0]["failed"].as_u64() >= Some(1), "{v}");
    let _ = tx.send(());
    let _ = server.await;
}

#[test]
fn alerting_configs_with_bad_keys_or_urls_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.alerting.receivers = toml::from_str::<pno_serve::alerting::AlertingConfig>(
        "[[receivers]]\nname = \"x\"\nurl = \"https://127.0.0.1:1/\"\nca = \"/nonexistent/ca.pem\"",
    )
    .unwrap()
    .receivers;
    let e = AppState::new(cfg, Device::flex()).unwrap_err().to_string();
    assert!(
        e.contains("alerting.receivers[0].ca") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = ServeConfig::from_toml_str("repository = \"m\"\n[alerting]\nwindow = 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("window"), "{e}");
    let e = ServeConfig::from_toml_str(
        "repository = \"m\"\n[[alerting.receivers]]\nname = \"r\"\nurl = \"mailto:x\"",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerting.receivers[0].url"), "{e}");
}
