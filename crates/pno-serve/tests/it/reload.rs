//! Config hot reload: a good file is swapped in (its new limits act at once, rate-limit state is
//! kept), a bad one, one that changes a restart-only setting, or one under which a model fails
//! its smoke inference is rejected naming why while the old config keeps serving; every attempt
//! is audited and shows in `/metrics`.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use pno_serve::ServeConfig;
use serde_json::{Value, json};

use super::*;

/// A state whose config source is `file` (written from `text`, the repository appended).
fn reloadable(dir: &Path, text: &str) -> (AppState, PathBuf, String) {
    let repo = repo(dir, "pno", &[1]);
    let file = dir.join("serve.toml");
    let head = format!(
        "replica = \"t\"\nrepository = {:?}\n",
        repo.display().to_string()
    );
    std::fs::write(&file, format!("{head}{text}")).unwrap();
    let mut cfg = ServeConfig::from_file(&file).unwrap();
    cfg.audit.path = Some(dir.join("audit.log"));
    let st = state(cfg);
    let (f, audit) = (file.clone(), dir.join("audit.log"));
    st.set_config_source(Box::new(move || {
        let mut c = ServeConfig::from_file(&f)?;
        c.audit.path = Some(audit.clone());
        Ok(c)
    }));
    (st, file, head)
}

async fn reload(st: &AppState) -> (StatusCode, Value) {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    call(
        st,
        with_key(post_json("/v2/admin/config/reload", &json!({})), &key),
    )
    .await
}

async fn metrics(st: &AppState) -> String {
    String::from_utf8(body_bytes(send(st, get("/metrics")).await).await).unwrap()
}

#[tokio::test]
async fn a_good_config_is_swapped_in_and_acts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (st, file, head) = reloadable(dir.path(), "[rate_limit]\nper_ip_rps = 100.0\n");
    let m0 = metrics(&st).await;
    let hash0 = m0
        .split("pno_config_info{hash=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(call(&st, get("/v2/models/pno")).await.0, StatusCode::OK);
    }
    std::fs::write(
        &file,
        format!(
            "{head}[rate_limit]\nper_ip_rps = 0.01\nper_ip_burst = 1\n[breaker]\nwindow = 12\n"
        ),
    )
    .unwrap();
    let (s, v) = reload(&st).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["changed"],
        json!([
            "breaker.window",
            "rate_limit.per_ip_burst",
            "rate_limit.per_ip_rps"
        ])
    );
    assert_ne!(v["hash"].as_str().unwrap(), hash0);
    assert_eq!(st.config().breaker.window, 12);
    // The new rate limit acts at once: the bucket (capped at the new burst) is spent.
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(call(&st, get("/v2/models/pno")).await.0.as_u16());
    }
    assert!(codes.contains(&429), "{codes:?}");
    let m = metrics(&st).await;
    assert!(
        m.contains("pno_config_last_reload_successful{replica=\"t\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "pno_config_info{{hash=\"{}\",replica=\"t\"}} 1",
            v["hash"].as_str().unwrap()
        )),
        "{m}"
    );
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(log.contains("\"action\":\"config.reload\""), "{log}");
    assert!(
        log.contains("ok: breaker.window, rate_limit.per_ip_burst"),
        "{log}"
    );
}

#[tokio::test]
async fn a_bad_config_is_rejected_naming_why_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (st, file, head) = reloadable(dir.path(), "[limits]\nmax_queue = 9\n");
    for (text, why) in [
        ("[limits]\nmax_queue = \"lots\"\n", "limits.max_queue"),
        ("[breaker]\nfailure_rate = 3.0\n", "breaker.failure_rate"),
        ("bogus = 1\n", "bogus"),
        ("listen = \"127.0.0.1:9\"\n", "need a restart: listen"),
        (
            "[limits]\nmax_connections = 5\n",
            "need a restart: limits.max_connections",
        ),
    ] {
        std::fs::write(&file, format!("{head}{text}")).unwrap();
        let (s, v) = reload(&st).await;
        assert_eq!(
            (s, v["class"].as_str()),
            (StatusCode::BAD_REQUEST, Some("input")),
            "{text}: {v}"
        );
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains(why) && e.contains("previous config keeps serving"),
            "{text}: {e}"
        );
        assert_eq!(
            st.config().limits.max_queue,
            9,
            "the old config is in force"
        );
        assert!(
            metrics(&st)
                .await
                .contains("pno_config_last_reload_successful{replica=\"t\"} 0")
        );
    }
    std::fs::remove_file(&file).unwrap();
    let (s, v) = reload(&st).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("serve.toml"),
        "names the file: {v}"
    );
    // Good again.
    std::fs::write(&file, format!("{head}[limits]\nmax_queue = 9\n")).unwrap();
    assert_eq!(reload(&st).await.0, StatusCode::OK);
    assert!(
        metrics(&st)
            .await
            .contains("pno_config_last_reload_successful{replica=\"t\"} 1")
    );
}

#[tokio::test]
async fn a_model_that_fails_its_smoke_inference_under_the_new_config_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (st, file, head) = reloadable(dir.path(), "");
    // Version 2 appears on disk, broken; the new config serves every version.
    crate::resilience::broken_copy(&fixture_run(), &dir.path().join("repo/pno/2"));
    std::fs::write(
        &file,
        format!("{head}[models.pno]\nversion_policy = \"all\"\n"),
    )
    .unwrap();
    let (s, v) = reload(&st).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("model `pno`") && e.contains("non-finite"), "{e}");
    let loaded: Vec<(String, u64)> = st.repository().loaded();
    assert_eq!(loaded, [("pno".to_string(), 1)], "put back as it was");
    assert_eq!(
        call(
            &st,
            post_json("/v2/models/pno/infer", &infer_body(&input(1), 1, json!({})))
        )
        .await
        .0,
        StatusCode::OK
    );
    // Without a config file there is nothing to reload.
    let (_d, plain) = setup();
    let (s, _) = reload(&plain).await;
    assert_eq!(s, StatusCode::CONFLICT);
}
