//! Serving on worker threads (`fhir_server::workers`) over a real socket, on a fresh
//! PostgreSQL database (`#[sqlx::test]`; DATABASE_URL names the server).

use std::time::Duration;

use fhir_server::{AppState, Config, workers};
use sqlx::PgPool;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_worker_serves_the_same_data_and_a_shutdown_ends_them_all(pool: PgPool) {
    let config = Config::from_lookup(|name| match name {
        "FHIR_AUTH" => Some("none".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("test config: {e}"));
    let state =
        AppState::new(Store::from_pool(pool), config).unwrap_or_else(|e| panic!("test state: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let base = format!(
        "http://{}/fhir",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(workers::serve(listener, state, 3, async {
        let _ = stopped.await;
    }));

    // A connection per request: they are handed to the three workers in turn.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let put = fresh
        .put(format!("{base}/Patient/spread"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","id":"spread","active":true}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put: {e}"));
    assert_eq!(put.status(), 201);
    for _ in 0..6 {
        let read = fresh
            .get(format!("{base}/Patient/spread"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()["etag"], "W/\"1\"");
    }

    // A kept-alive idle connection does not hold the shutdown back.
    let kept = reqwest::Client::new();
    let health = kept
        .get(format!("{base}/metadata"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("metadata: {e}"));
    assert_eq!(health.status(), 200);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap_or_else(|_| panic!("the workers did not stop"))
        .unwrap_or_else(|e| panic!("serve task: {e}"))
        .unwrap_or_else(|e| panic!("serve: {e}"));
    assert!(
        fresh.get(format!("{base}/metadata")).send().await.is_err(),
        "nothing listens after the shutdown"
    );
}
