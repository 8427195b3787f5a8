//! Identity and least privilege, against the real binaries on a real Redis: bearer tokens
//! checked (missing, expired, wrong issuer or audience, bad signature, unknown key), users
//! acting only as themselves, the group owner's rules, the actor recorded in every event, a
//! JWKS rotated while running, and the safe defaults (no open side beyond loopback, no side
//! on memory by accident).

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use esr_app::auth::dev::Signer;
use esr_e2e::{Service, binary, free_port, wait_healthy};
use esr_testkit::RedisServer;
use serde_json::{Value, json};

/// A stream entry's field and its value, as `XRANGE` gives them.
type Field = (String, Vec<u8>);

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "esr";

/// A key pair: its public half in a PEM file the services read, its private half signing.
struct Keys {
    pair: rcgen::KeyPair,
    public_pem: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("esr-auth-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Keys {
    fn new(algorithm: &'static rcgen::SignatureAlgorithm) -> Self {
        let pair = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let dir = tempdir::Dir::new();
        let public_pem = dir.0.join("public.pem");
        std::fs::write(&public_pem, pair.public_key_pem()).unwrap();
        Self {
            pair,
            public_pem,
            _dir: dir,
        }
    }

    fn signer(&self) -> Signer {
        Signer::from_pem(self.pair.serialize_pem().as_bytes()).unwrap()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims that the services configured below accept, for `sub` with `roles`.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({"sub": sub, "roles": roles, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
}

fn token(signer: &Signer, sub: &str, roles: &[&str]) -> String {
    signer.sign(&claims(sub, roles)).unwrap()
}

/// The three sides on `redis`, authenticating with the public key in `keys`.
struct Sides {
    _services: Vec<Service>,
    command: String,
    query: String,
    projector: String,
}

async fn start_sides(redis: &RedisServer, auth: &[(&'static str, String)]) -> Sides {
    let (c, q, p) = (free_port(), free_port(), free_port());
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("AUTH", "on".to_owned()),
        ("AUTH_ISSUER", ISSUER.to_owned()),
        ("AUTH_AUDIENCE", AUDIENCE.to_owned()),
        ("PROJECTOR_BLOCK_MS", "100".to_owned()),
    ];
    env.extend_from_slice(auth);
    let with = |listen: (&'static str, String)| {
        let mut all = env.clone();
        all.push(listen);
        all
    };
    let services = vec![
        Service::start(
            "command",
            &[],
            &with(("COMMAND_LISTEN", format!("127.0.0.1:{c}"))),
        ),
        Service::start(
            "query",
            &[],
            &with(("QUERY_LISTEN", format!("127.0.0.1:{q}"))),
        ),
        Service::start(
            "projector",
            &[],
            &with(("PROJECTOR_LISTEN", format!("127.0.0.1:{p}"))),
        ),
    ];
    let sides = Sides {
        _services: services,
        command: format!("http://127.0.0.1:{c}"),
        query: format!("http://127.0.0.1:{q}"),
        projector: format!("http://127.0.0.1:{p}"),
    };
    for side in [&sides.command, &sides.query, &sides.projector] {
        wait_healthy(&format!("{side}/livez")).await;
    }
    sides
}

/// Send `method path` with `body` and `token` (if any): status, body and the
/// `WWW-Authenticate` header.
async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        challenge,
    )
}

async fn post(url: &str, token: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = send(reqwest::Method::POST, url, Some(token), Some(body)).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_with_401_and_say_why() {
    let redis = RedisServer::start();
    let keys = Keys::new(&rcgen::PKCS_ED25519);
    let sides = start_sides(
        &redis,
        &[("AUTH_JWT_KEY_FILE", keys.public_pem.display().to_string())],
    )
    .await;
    let signer = keys.signer();
    let stranger = Keys::new(&rcgen::PKCS_ED25519).signer();
    let register = json!({"user_id": "1", "name": "Duffy", "surname": "Duck"});
    let with_claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims("1", &[]);
        change(&mut claims);
        signer.sign(&claims).unwrap()
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "Authorization"),
        ("not a JWT", Some("not-a-jwt".into()), "malformed"),
        (
            "expired",
            Some(with_claims(&|c| c["exp"] = json!(now() - 3600))),
            "expired",
        ),
        (
            "not valid yet",
            Some(with_claims(&|c| c["nbf"] = json!(now() + 3600))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            Some(with_claims(&|c| c["iss"] = json!("https://evil.test"))),
            "issuer",
        ),
        (
            "wrong audience",
            Some(with_claims(&|c| c["aud"] = json!("someone-else"))),
            "audience",
        ),
        (
            "no subject",
            Some(with_claims(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })),
            "sub",
        ),
        (
            "signed by another key",
            Some(token(&stranger, "1", &["admin"])),
            "signature",
        ),
    ];
    for (case, token, says) in &cases {
        for url in [
            format!("{}/users", sides.command),
            format!("{}/users/1", sides.query),
        ] {
            let method = if url.starts_with(&sides.command) {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            };
            let (status, body, challenge) =
                send(method, &url, token.as_deref(), Some(register.clone())).await;
            assert_eq!(status, 401, "{case} at {url}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{case}: {body}");
            assert!(body["error"].is_string(), "{case}: {body}");
            let challenge = challenge.unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
                "{case}: {challenge}"
            );
        }
    }
    // Nothing was appended by any of them.
    let version: Option<String> = redis
        .query(redis::cmd("GET").arg("version:{p0}:1"))
        .unwrap();
    assert_eq!(version, None);
    // A good token goes through; the operations routes need none.
    let (status, body) = post(
        &format!("{}/users", sides.command),
        &token(&signer, "1", &[]),
        register,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for url in [
        format!("{}/livez", sides.command),
        format!("{}/readyz", sides.query),
        format!("{}/metrics", sides.command),
        format!("{}/openapi.json", sides.query),
        format!("{}/healthz", sides.projector),
    ] {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_act_only_as_themselves_admins_on_anyone_and_every_event_names_its_actor() {
    let redis = RedisServer::start();
    // P-256 this time: ES256.
    let keys = Keys::new(&rcgen::PKCS_ECDSA_P256_SHA256);
    let sides = start_sides(
        &redis,
        &[("AUTH_JWT_KEY_FILE", keys.public_pem.display().to_string())],
    )
    .await;
    let signer = keys.signer();
    let [one, two, three] = ["1", "2", "3"].map(|u| token(&signer, u, &[]));
    let admin = token(&signer, "root", &["admin"]);
    let command = |path: &str| format!("{}{path}", sides.command);

    // Registering without an id registers the token's subject.
    for (who, name) in [(&one, "Duffy"), (&two, "Bugs"), (&three, "Elmer")] {
        let (status, body) = post(
            &command("/users"),
            who,
            json!({"name": name, "surname": "Looney"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // 1 cannot register as 4, nor change 2: 403, and nothing is appended.
    let (status, body) = post(
        &command("/users"),
        &one,
        json!({"user_id": "4", "name": "X", "surname": "Y"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body, _) = send(
        reqwest::Method::PATCH,
        &command("/users/2"),
        Some(&one),
        Some(json!({"name": "Evil"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = post(
        &command("/users/2/friends"),
        &one,
        json!({"friend_id": "3"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let two_version: String = redis
        .query(redis::cmd("GET").arg("version:{p0}:2"))
        .unwrap();
    assert!(two_version.starts_with("1|"), "{two_version}");
    // An admin can.
    let (status, body, _) = send(
        reqwest::Method::PATCH,
        &command("/users/2"),
        Some(&admin),
        Some(json!({"name": "Bugsy"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // 1 befriends 2: the policy writes 2's side as the system, on 1's behalf.
    let (status, body) = post(
        &command("/users/1/friends"),
        &one,
        json!({"friend_id": "2"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Groups: 1 creates and owns it; 2 joins themself; 2 cannot add 3, the owner can; 3
    // cannot remove 2, an admin can.
    let (status, body) = post(
        &command("/groups"),
        &one,
        json!({"group_id": "looney", "name": "Looney Tunes", "capacity": 10}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let members = command("/groups/looney/members");
    assert_eq!(post(&members, &two, json!({"user_id": "2"})).await.0, 200);
    let (status, body) = post(&members, &two, json!({"user_id": "3"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(post(&members, &one, json!({"user_id": "3"})).await.0, 200);
    let remove_2 = command("/groups/looney/members/2");
    let (status, _, _) = send(reqwest::Method::DELETE, &remove_2, Some(&three), None).await;
    assert_eq!(status, 403);
    let (status, _, _) = send(reqwest::Method::DELETE, &remove_2, Some(&admin), None).await;
    assert_eq!(status, 200);

    // History: a user's own, or an admin's read; anyone authenticated reads profiles.
    let events_of_2 = format!("{}/users/2/events", sides.query);
    let (status, body, _) = send(reqwest::Method::GET, &events_of_2, Some(&one), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, history, _) = send(reqwest::Method::GET, &events_of_2, Some(&two), None).await;
    assert_eq!(status, 200, "{history}");
    let actors: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actors,
        [
            ("registered", "user:2"),
            ("personal_info_changed", "user:root"),
            ("friend_added", "system:user:1"),
        ]
    );
    let (status, profile, _) = send(
        reqwest::Method::GET,
        &format!("{}/users/2?min_version=3", sides.query),
        Some(&three),
        None,
    )
    .await;
    assert_eq!(
        (status, &profile["friends"]),
        (200, &json!(["1"])),
        "{profile}"
    );
    let (status, history, _) = send(
        reqwest::Method::GET,
        &format!("{}/groups/looney/events", sides.query),
        Some(&three),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let actors: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["user:1", "user:2", "user:1", "user:root"]);

    // The category entry carries it for redis-cli, and `esr events` shows it.
    let entries: Vec<(String, Vec<Field>)> = redis
        .query(
            redis::cmd("XRANGE")
                .arg("user_friends:{p0}")
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    let actor_fields: Vec<&str> = entries
        .iter()
        .flat_map(|(_, fields)| fields.iter())
        .filter(|(k, _)| k == "actor")
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
        .collect();
    assert_eq!(actor_fields, ["user:1", "system:user:1"]);
    let output = Command::new(binary("esr"))
        .args(["events", "user", "2"])
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.lines().next().unwrap_or("").contains("ACTOR"),
        "{shown}"
    );
    for actor in ["user:2", "user:root", "system:user:1"] {
        assert!(shown.contains(actor), "{actor} missing from:\n{shown}");
    }
}

/// A JWKS document served by a small HTTP server, replaceable while it runs.
struct JwksServer {
    url: String,
    document: Arc<RwLock<Value>>,
    _task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(document: Value) -> Self {
        let document = Arc::new(RwLock::new(document));
        let served = document.clone();
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let served = served.clone();
                async move { axum::Json(served.read().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            document,
            _task: task,
        }
    }
}

/// The JWK of an Ed25519 key.
fn jwk(keys: &Keys, kid: &str) -> Value {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(keys.pair.public_key_raw());
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_rotated_while_running_still_verifies_and_unknown_keys_are_refused() {
    let redis = RedisServer::start();
    let (first, second) = (
        Keys::new(&rcgen::PKCS_ED25519),
        Keys::new(&rcgen::PKCS_ED25519),
    );
    let jwks = JwksServer::start(json!({"keys": [jwk(&first, "k1")]})).await;
    let sides = start_sides(&redis, &[("AUTH_JWKS_URL", jwks.url.clone())]).await;
    let url = format!("{}/users", sides.command);
    let register = |id: &str| json!({"user_id": id, "name": "N", "surname": "S"});
    let by_first = first.signer().with_kid("k1");
    let by_second = second.signer().with_kid("k2");

    let (status, body) = post(&url, &token(&by_first, "a", &[]), register("a")).await;
    assert_eq!(status, 201, "{body}");
    // k2 is not published yet: unknown key.
    let (status, body) = post(&url, &token(&by_second, "b", &[]), register("b")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("unknown key"),
        "{body}"
    );
    // A token claiming k1 but signed by the second key does not verify.
    let forged = second.signer().with_kid("k1");
    let (status, body) = post(&url, &token(&forged, "c", &[]), register("c")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    // The identity provider rotates: k2 replaces k1.
    *jwks.document.write().unwrap() = json!({"keys": [jwk(&second, "k2")]});
    // Refreshes for unknown keys are at most one a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = post(&url, &token(&by_second, "b", &[]), register("b")).await;
    assert_eq!(
        status, 201,
        "a token of the rotated-in key verifies: {body}"
    );
    // The key withdrawn is gone with the refresh.
    let (status, body) = post(&url, &token(&by_first, "d", &[]), register("d")).await;
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_side_with_authentication_off_refuses_a_non_loopback_address() {
    for (name, variable) in [("command", "COMMAND_LISTEN"), ("query", "QUERY_LISTEN")] {
        let output = Command::new(binary(name))
            .env("AUTH", "off")
            .env("STORE", "memory")
            .env_remove("REDIS_URL")
            .env(variable, format!("0.0.0.0:{}", free_port()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} started open on 0.0.0.0");
        assert!(
            stderr.contains("AUTH=off") && stderr.contains(variable),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn a_side_with_authentication_on_and_no_key_refuses_to_start() {
    let output = Command::new(binary("command"))
        .env_remove("AUTH")
        .env_remove("AUTH_JWT_KEY_FILE")
        .env_remove("AUTH_JWKS_URL")
        .env("STORE", "memory")
        .env("COMMAND_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("AUTH_JWT_KEY_FILE"), "{stderr}");
}

#[test]
fn the_separate_sides_refuse_to_start_without_a_redis_setting() {
    for (name, variable) in [
        ("command", "COMMAND_LISTEN"),
        ("query", "QUERY_LISTEN"),
        ("projector", "PROJECTOR_LISTEN"),
    ] {
        let output = Command::new(binary(name))
            .env("AUTH", "off")
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_NODES")
            .env_remove("STORE")
            // A misspelt variable is no Redis setting.
            .env("REDIS_ULR", "redis://127.0.0.1:6390/")
            .env(variable, format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} started on memory");
        assert!(
            stderr.contains("STORE=memory") && stderr.contains("REDIS_URL"),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_listen_serves_liveness_readiness_and_metrics_apart_from_the_api() {
    let keys = Keys::new(&rcgen::PKCS_ED25519);
    let (api, ops) = (free_port(), free_port());
    let _command = Service::start(
        "command",
        &[],
        &[
            ("AUTH", "on".to_owned()),
            ("AUTH_JWT_KEY_FILE", keys.public_pem.display().to_string()),
            ("COMMAND_LISTEN", format!("127.0.0.1:{api}")),
            ("OPS_LISTEN", format!("127.0.0.1:{ops}")),
        ],
    );
    wait_healthy(&format!("http://127.0.0.1:{ops}/livez")).await;
    // `/readyz` answers there too: 503 `groups_missing`, as no projector ran on this store.
    for (route, status) in [("/livez", 200), ("/readyz", 503), ("/metrics", 200)] {
        let on_ops = reqwest::get(format!("http://127.0.0.1:{ops}{route}"))
            .await
            .unwrap();
        assert_eq!(on_ops.status(), status, "{route} on OPS_LISTEN");
        let on_api = reqwest::get(format!("http://127.0.0.1:{api}{route}"))
            .await
            .unwrap();
        assert_eq!(on_api.status(), 404, "{route} is not on the API's address");
    }
    let (status, _, _) = send(
        reqwest::Method::POST,
        &format!("http://127.0.0.1:{api}/users"),
        None,
        Some(json!({"name": "A", "surname": "B"})),
    )
    .await;
    assert_eq!(status, 401);
}
