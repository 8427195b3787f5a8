//! The limits every side's HTTP server keeps, over real sockets: a body or headers sent too
//! slowly, more requests than allowed at once, and a shutdown with a request still waiting.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esr_app::config::HttpLimits;
use esr_app::{CommandSettings, Commands, QueryService, sides};
use esr_store::{MemoryStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Longer than any limit set here: an answer that takes this long never came.
const PATIENCE: Duration = Duration::from_secs(4);

struct Side {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn command_side(limits: HttpLimits) -> Side {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let commands = Arc::new(Commands::new(store, CommandSettings::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(sides::command_side(
        commands,
        esr_app::social::module().into(),
        listener,
        limits,
        esr_app::auth::Authentication::Off,
        shutdown,
    ));
    Side {
        address,
        stop,
        running,
    }
}

/// A query side whose `min_version` reads wait `max_wait` for a user that never comes.
async fn query_side(limits: HttpLimits, max_wait: Duration) -> Side {
    let mut queries = QueryService::new(Arc::new(MemoryStore::new()));
    queries.max_wait = max_wait;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(sides::query_side(
        Arc::new(queries),
        esr_app::social::module().into(),
        listener,
        limits,
        esr_app::auth::Authentication::Off,
        shutdown,
    ));
    Side {
        address,
        stop,
        running,
    }
}

/// Send `text` and read until the server closes; `None` when it stays silent past PATIENCE.
async fn exchange(address: SocketAddr, text: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(text.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

fn waiting_read() -> String {
    get("/users/nobody?min_version=5")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_answered_503_timed_out() {
    let side = command_side(HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    })
    .await;
    let started = Instant::now();
    // A promised body of 100 bytes of which one arrives.
    let answer = exchange(
        side.address,
        "POST /users HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .expect("an answer before the client gave up");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"timed_out\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_too_slowly_close_the_connection() {
    let side = command_side(HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    })
    .await;
    let answer = exchange(side.address, "GET /healthz HTTP/1.1\r\nHost: te").await;
    assert!(
        answer.is_some(),
        "the server kept a connection whose headers never ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_are_refused_at_once() {
    let side = command_side(HttpLimits {
        max_in_flight: 1,
        request_timeout: Duration::from_millis(1500),
        ..HttpLimits::default()
    })
    .await;
    let address = side.address;
    // A request in flight: its body is promised and never comes.
    let slow = tokio::spawn(async move {
        exchange(
            address,
            "POST /users HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let refused = exchange(address, &get("/healthz")).await.unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"overloaded\""), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // The slow request ended (timed out); then there is room again.
    let first = slow.await.unwrap().unwrap();
    assert!(first.starts_with("HTTP/1.1 503"), "{first}");
    let later = exchange(address, &get("/healthz")).await.unwrap();
    assert!(later.starts_with("HTTP/1.1 200"), "{later}");
}

/// `min_version` waits have their own cap: while they wait, other requests are served, and a
/// wait past the cap is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_waits_do_not_take_the_in_flight_places_and_have_their_own_cap() {
    let side = query_side(
        HttpLimits {
            max_in_flight: 1,
            max_waiting: 2,
            ..HttpLimits::default()
        },
        Duration::from_millis(1500),
    )
    .await;
    let address = side.address;
    let waits: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { exchange(address, &waiting_read()).await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = exchange(address, &get("/healthz")).await.unwrap();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let started = Instant::now();
    let refused = exchange(address, &waiting_read()).await.unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"overloaded\""), "{refused}");
    assert!(started.elapsed() < Duration::from_millis(500));
    for wait in waits {
        let answer = wait.await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_lets_requests_in_hand_finish_within_the_deadline_only() {
    // A read that ends before the deadline is answered in full.
    let quick = query_side(
        HttpLimits {
            shutdown_deadline: Duration::from_secs(3),
            ..HttpLimits::default()
        },
        Duration::from_millis(500),
    )
    .await;
    let address = quick.address;
    let in_hand = tokio::spawn(async move { exchange(address, &waiting_read()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    quick.stop.send(true).unwrap();
    let answer = in_hand.await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    quick.running.await.unwrap().unwrap();

    // One that would outlast the deadline does not hold the process up.
    let slow = query_side(
        HttpLimits {
            shutdown_deadline: Duration::from_millis(300),
            ..HttpLimits::default()
        },
        Duration::from_secs(8),
    )
    .await;
    let address = slow.address;
    let _in_hand = tokio::spawn(async move { exchange(address, &waiting_read()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    slow.stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, slow.running)
        .await
        .expect("the side stopped by its deadline")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

/// A connection that sends nothing at all is closed after the request timeout: silent sockets
/// must not pile up until the file descriptors run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let side = command_side(HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    })
    .await;
    let started = Instant::now();
    let answer = exchange(side.address, "").await;
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// An idle keep-alive connection (a request answered, nothing after) is closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let side = command_side(HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    })
    .await;
    let started = Instant::now();
    let answer = exchange(side.address, "GET /livez HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("closed after the answer, once idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Past `max_connections` a new connection is closed at once, while those open are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_once() {
    let side = command_side(HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    })
    .await;
    let held = [
        TcpStream::connect(side.address).await.unwrap(),
        TcpStream::connect(side.address).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let refused = exchange(side.address, &get("/livez")).await;
    assert_eq!(refused.as_deref(), Some(""), "closed with no answer");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served = exchange(side.address, &get("/livez")).await.unwrap();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Send `bytes` raw and read until the server closes; `None` when it stays open past PATIENCE.
async fn exchange_bytes(address: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await {
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

fn short_idle() -> HttpLimits {
    HttpLimits {
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    }
}

/// An HTTP/2 connection that opens and then asks nothing is closed after the idle timeout
/// (HTTP/2 has no header timer of its own: before, it stayed open for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let side = command_side(short_idle()).await;
    let started = Instant::now();
    let answer = exchange_bytes(side.address, HTTP2_PREFACE).await;
    assert!(answer.is_some(), "the HTTP/2 connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// HTTP/2 headers that never end (a HEADERS frame without END_HEADERS, then silence): the
/// connection is closed after the idle timeout, not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_headers_that_never_end_close_the_connection() {
    let side = command_side(short_idle()).await;
    let mut bytes = HTTP2_PREFACE.to_vec();
    // HEADERS, stream 1, flags END_STREAM only (no END_HEADERS): `:method: GET` (HPACK 0x82).
    bytes.extend_from_slice(&[0x00, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x01, 0x82]);
    let started = Instant::now();
    let answer = exchange_bytes(side.address, &bytes).await;
    assert!(answer.is_some(), "the HTTP/2 connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// HTTP/2 is served (prior knowledge), and a connection in use is not closed as idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_answered_and_a_busy_connection_stays_open() {
    let side = command_side(short_idle()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let started = Instant::now();
    // Requests over one connection for longer than the idle timeout.
    while started.elapsed() < Duration::from_millis(1500) {
        let answer = client
            .get(format!("http://{}/livez", side.address))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.version(), reqwest::Version::HTTP_2);
        assert_eq!(answer.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Headers past the size limit are refused, not buffered: over HTTP/1, a 100 KB header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let side = command_side(HttpLimits::default()).await;
    let answer = exchange(
        side.address,
        &format!(
            "GET /livez HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(100_000)
        ),
    )
    .await
    .expect("answered or closed");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
}

/// One user's commands past their rate are answered 429 (with `Retry-After`), and nothing is
/// done for them; another user is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_past_their_command_rate_is_answered_429_and_others_are_served() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let settings = CommandSettings {
        commands_per_user_per_sec: 5,
        ..CommandSettings::default()
    };
    let commands = Arc::new(Commands::new(store, settings));
    let (signer, keys) = esr_app::auth::dev::Signer::ephemeral().unwrap();
    let verifier = esr_app::auth::Verifier::new(keys, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(sides::command_side(
        commands,
        esr_app::social::module().into(),
        listener,
        HttpLimits::default(),
        esr_app::auth::Authentication::Jwt(Arc::new(verifier)),
        shutdown,
    ));
    let client = reqwest::Client::new();
    let token = |user: &str| {
        signer
            .token(user, &[], Duration::from_secs(60), None, None)
            .unwrap()
    };
    let (mallory, alice) = (token("mallory"), token("alice"));
    for (user, token) in [("mallory", &mallory), ("alice", &alice)] {
        let registered = client
            .post(format!("http://{address}/users"))
            .bearer_auth(token)
            .json(&serde_json::json!({"user_id": user, "name": "A", "surname": "B"}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
    }
    let mut statuses = Vec::new();
    for n in 0..30 {
        let answer = client
            .post(format!("http://{address}/users/mallory/activity"))
            .bearer_auth(&mallory)
            .json(&serde_json::json!({"action": "like", "object": format!("o{n}")}))
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            assert_eq!(answer.headers()["retry-after"], "1");
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited", "{body}");
            statuses.push(429);
        } else {
            statuses.push(answer.status().as_u16());
        }
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((8..=12).contains(&served), "{statuses:?}");
    assert_eq!(served + statuses.iter().filter(|s| **s == 429).count(), 30);
    let other = client
        .post(format!("http://{address}/users/alice/activity"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"action": "like", "object": "o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}
