//! API keys as a live, single source of truth: changes by another handle of the keys file (what
//! `pno keys` does) reach the server within a second and are never undone by the server's next
//! change; a broken file is refused; expiry, rotation with grace and model scope through the
//! admin API.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use pno_serve::auth::{KeySpec, KeyStore, Role};
use serde_json::{Value, json};

use crate::*;

/// A state with a keys file holding a reader and an admin key; anonymous access off.
fn secured(dir: &std::path::Path) -> (AppState, String, String) {
    let repo = repo(dir, "pno", &[1]);
    let keys_path = dir.join("keys.json");
    let store = KeyStore::open(&keys_path).unwrap();
    let (reader, _) = store.create(Role::Reader).unwrap();
    let (admin, _) = store.create(Role::Admin).unwrap();
    let mut cfg = config(&repo);
    cfg.keys = Some(keys_path);
    // Polling with a key not yet known is a string of 401s: not a lockout here.
    cfg.rate_limit.max_auth_failures = 10_000;
    (state(cfg), reader, admin)
}

/// The status of `GET /v2/models/pno` with `key`.
async fn metadata(st: &AppState, key: &str) -> StatusCode {
    call(st, with_key(get("/v2/models/pno"), key)).await.0
}

/// Poll until `GET /v2/models/pno` with `key` answers `want`; the time it took.
async fn until_status(st: &AppState, key: &str, want: StatusCode, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if metadata(st, key).await == want {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "still not {want} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(st: &AppState) -> String {
    String::from_utf8(body_bytes(send(st, get("/metrics")).await).await).unwrap()
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix("{replica=\"t\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn keys_changed_by_another_handle_reach_the_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, _admin) = secured(dir.path());
    assert_eq!(metadata(&st, &reader).await, StatusCode::OK);
    // "The CLI": another handle on the same file.
    let cli = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    let (fresh, _) = cli.create(Role::Reader).unwrap();
    until_status(&st, &fresh, StatusCode::OK, Duration::from_secs(1)).await;
    assert!(cli.revoke(&reader[4..16]).unwrap());
    let took = until_status(
        &st,
        &reader,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let text = metrics_text(&st).await;
    assert_eq!(gauge(&text, "pno_keys_reload_success"), 1.0);
    assert!(gauge(&text, "pno_keys_reload_timestamp_seconds") > 1.7e9);
}

#[tokio::test]
async fn an_admin_create_after_a_cli_revoke_does_not_resurrect_the_revoked_key() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, admin) = secured(dir.path());
    let cli = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    assert!(cli.revoke(&reader[4..16]).unwrap());
    // At once, before the server could have noticed: its change starts from the file.
    let (s, v) = call(
        &st,
        with_key(
            post_json("/v2/admin/keys", &json!({"role": "reader"})),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let file = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    let ids: Vec<String> = file.list().into_iter().map(|k| k.id).collect();
    assert!(!ids.contains(&reader[4..16].to_string()), "{ids:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(file.verify(v["key"].as_str().unwrap()).is_some());
    assert_eq!(metadata(&st, &reader).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metadata(&st, v["key"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_invalid_keys_file_keeps_the_old_keys_and_sets_the_reload_gauge_to_0() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, admin) = secured(dir.path());
    let path = dir.path().join("keys.json");
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, "{\"keys\": [ oops").unwrap();
    let t = Instant::now();
    while gauge(&metrics_text(&st).await, "pno_keys_reload_success") != 0.0 {
        assert!(t.elapsed() < Duration::from_secs(1), "gauge still 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metadata(&st, &reader).await, StatusCode::OK);
    // A change through the API is refused rather than written over the broken file.
    let (s, v) = call(
        &st,
        with_key(
            post_json("/v2/admin/keys", &json!({"role": "reader"})),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["class"], "persistent");
    assert!(v["error"].as_str().unwrap().contains("keys.json"), "{v}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"keys\": [ oops");
    // Fixed by hand: back to 1.
    std::fs::write(&path, good).unwrap();
    let t = Instant::now();
    while gauge(&metrics_text(&st).await, "pno_keys_reload_success") != 1.0 {
        assert!(t.elapsed() < Duration::from_secs(1), "gauge still 0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_expired_key_is_401_naming_the_key_and_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _reader, _admin) = secured(dir.path());
    let spec = KeySpec {
        expires_in: Some(Duration::from_secs(1)),
        models: vec![],
    };
    let (key, rec) = st.keys().create_with(Role::Reader, &spec).unwrap();
    assert_eq!(metadata(&st, &key).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = call(&st, with_key(get("/v2/models/pno"), &key)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("API key {} expired at", rec.id)) && msg.contains('Z'),
        "{msg}"
    );
    assert_eq!(v["class"], "security");
}

#[tokio::test]
async fn a_key_scoped_to_models_gets_403_naming_the_model_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _reader, admin) = secured(dir.path());
    let (s, v) = call(
        &st,
        with_key(
            post_json(
                "/v2/admin/keys",
                &json!({"role": "operator", "models": ["other"], "expires_in_s": 3600}),
            ),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["models"], json!(["other"]));
    assert!(v["expires_at"].as_u64().unwrap() > 1_700_000_000);
    let key = v["key"].as_str().unwrap().to_string();
    for req in [
        get("/v2/models/pno"),
        post_json(
            "/v2/models/pno/infer",
            &infer_body(&input(1), 1, json!({"n_samples": 2})),
        ),
        post_json("/v2/repository/models/pno/unload", &json!({})),
    ] {
        let (s, v) = call(&st, with_key(req, &key)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["class"], "security");
        assert!(v["error"].as_str().unwrap().contains("'pno'"), "{v}");
    }
    // Routes without a model are not scoped.
    let (s, _) = call(
        &st,
        with_key(post_json("/v2/repository/index", &json!({})), &key),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (body, field) in [
        (json!({"role": "reader", "expires_in_s": 0}), "expires_in_s"),
        (
            json!({"role": "reader", "expires_in_s": "1d"}),
            "expires_in_s",
        ),
        (json!({"role": "reader", "models": "pno"}), "models"),
        (json!({"role": "reader", "models": [""]}), "models"),
    ] {
        let (s, v) = call(&st, with_key(post_json("/v2/admin/keys", &body), &admin)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
}

#[tokio::test]
async fn rotation_through_the_admin_api_keeps_the_old_secret_for_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, admin) = secured(dir.path());
    let id = reader[4..16].to_string();
    let rotate = |grace: Value| {
        with_key(
            post_json(&format!("/v2/admin/keys/{id}/rotate"), &grace),
            &admin,
        )
    };
    let (s, v) = call(&st, rotate(json!({"grace_s": 1}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["role"].as_str()),
        (Some(&*id), Some("reader"))
    );
    let new = v["key"].as_str().unwrap().to_string();
    assert_eq!(metadata(&st, &reader).await, StatusCode::OK);
    assert_eq!(metadata(&st, &new).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(metadata(&st, &reader).await, StatusCode::UNAUTHORIZED);
    assert_eq!(metadata(&st, &new).await, StatusCode::OK);
    let (s, v) = call(&st, rotate(json!({"grace_s": -1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = call(
        &st,
        with_key(
            post_json("/v2/admin/keys/000000000000/rotate", &json!({})),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(&st, with_key(get("/v2/admin/keys"), &admin)).await;
    assert_eq!(s, StatusCode::OK);
    let listed = v["keys"].as_array().unwrap();
    assert!(listed.iter().all(|k| k.get("sha256").is_none()), "{v}");
    let me = listed.iter().find(|k| k["id"] == id).unwrap();
    assert!(me["last_used"].as_u64().unwrap() > 1_700_000_000, "{me}");
}
