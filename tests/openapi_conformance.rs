//! The OpenAPI documents as a contract, checked from outside: requests generated from each
//! side's own `/openapi.json` (every parameter and body drawn from its schema: patterns,
//! lengths, enums, formats, ranges) are sent to the real binaries on Redis, and every answer
//! must be documented for its route, never a 5xx, and never a refusal of the request's shape
//! (400, or 422 for a field or id) when the request kept to the document.
//!
//! What the generator keeps to beyond the schemas, because JSON Schema cannot say it and the
//! document says it in words: `min_version` and `at` are not sent together, and a birth date is
//! not after today.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use esr_e2e::{Service, free_port, wait_healthy};
use esr_testkit::RedisServer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// Requests per side.
const REQUESTS: usize = 1500;

/// Ids the seed registers, so that generated requests reach existing streams too.
const KNOWN_IDS: &[&str] = &["u1", "u2", "g1"];

/// An object the seed likes.
const KNOWN_OBJECT: &str = "o1";

const ID_PATTERN: &str = esr_schema::ID_PATTERN;

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn string_strategy(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().unwrap_or(64) as usize;
    match (schema["format"].as_str(), schema["pattern"].as_str()) {
        (Some("date"), _) => (1900i32..=2020, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| json!(format!("{y:04}-{m:02}-{d:02}")))
            .boxed(),
        (Some("date-time"), _) => (0i64..2_000_000_000)
            .prop_map(|seconds| {
                let at = chrono::DateTime::from_timestamp(seconds, 0).unwrap();
                json!(at.to_rfc3339())
            })
            .boxed(),
        (_, Some(pattern)) => {
            let bare = pattern.trim_start_matches('^').trim_end_matches('$');
            let drawn = proptest::string::string_regex(bare)
                .unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
                .prop_filter("within the length bounds", move |s| {
                    (min..=max).contains(&s.chars().count())
                });
            if pattern == ID_PATTERN {
                // Often an id that exists, so that routes answer more than 404.
                prop_oneof![
                    proptest::sample::select(KNOWN_IDS).prop_map(|id| json!(id)),
                    drawn.prop_map(|s| json!(s)),
                ]
                .boxed()
            } else {
                drawn.prop_map(|s| json!(s)).boxed()
            }
        }
        // Free text: often one the seed wrote (the object liked), so reads find it.
        _ => prop_oneof![
            Just(json!(KNOWN_OBJECT)),
            proptest::string::string_regex(&format!(".{{{min},{max}}}"))
                .unwrap()
                .prop_map(|s| json!(s)),
        ]
        .boxed(),
    }
}

/// Values that keep to `schema`.
fn value_strategy(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(document, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        // A record and the rules it keeps besides (at least one of its fields, say): the
        // record drawn, then one choice of each rule drawn over it.
        let mut drawn = Just(Value::Object(Map::new())).boxed();
        for part in parts {
            let part = value_strategy(document, part);
            drawn = (drawn, part)
                .prop_map(|(mut whole, part)| {
                    if let (Value::Object(whole), Value::Object(part)) = (&mut whole, part) {
                        whole.extend(part);
                    }
                    whole
                })
                .boxed();
        }
        return drawn;
    }
    if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let options: Vec<BoxedStrategy<Value>> = choices
            .iter()
            .map(|choice| value_strategy(document, choice))
            .collect();
        return proptest::strategy::Union::new(options).boxed();
    }
    if let Some(values) = schema["enum"].as_array() {
        return proptest::sample::select(values.clone()).boxed();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let non_null: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
    if non_null.is_empty() && types.contains(&"null") {
        return Just(Value::Null).boxed();
    }
    let drawn = match non_null.first().copied() {
        Some("string") => string_strategy(schema),
        Some("integer") => {
            let min = schema["minimum"].as_i64().unwrap_or(0);
            let max = schema["maximum"].as_i64().unwrap_or(min + 50);
            (min..=max).prop_map(|n| json!(n)).boxed()
        }
        Some("boolean") => any::<bool>().prop_map(|b| json!(b)).boxed(),
        Some("array") => {
            proptest::collection::vec(value_strategy(document, &schema["items"]), 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        Some("object") | None if schema["properties"].is_object() => {
            object_strategy(document, schema)
        }
        other => panic!("no generator for type {other:?}: {schema}"),
    };
    if types.contains(&"null") {
        prop_oneof![Just(Value::Null), drawn].boxed()
    } else {
        drawn
    }
}

fn object_strategy(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, property) in schema["properties"].as_object().unwrap() {
        let name = name.clone();
        let value = value_strategy(document, property);
        if required.contains(&name.as_str()) {
            fields.push(value.prop_map(move |v| Some((name.clone(), v))).boxed());
        } else {
            fields.push(
                proptest::option::of(value)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed(),
            );
        }
    }
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// One request drawn from an operation.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn request_strategy(
    document: &Value,
    template: &str,
    method: &str,
    operation: &Value,
) -> BoxedStrategy<Request> {
    let mut parameters: Vec<BoxedStrategy<Option<(String, String, String)>>> = Vec::new();
    for parameter in operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = parameter["name"].as_str().unwrap().to_owned();
        let place = parameter["in"].as_str().unwrap().to_owned();
        let value = value_strategy(document, &parameter["schema"]);
        let required = parameter["required"].as_bool().unwrap_or(false);
        let drawn = value.prop_map(move |v| match v {
            Value::Null => None,
            v => Some((place.clone(), name.clone(), text(&v))),
        });
        if required {
            parameters.push(drawn.boxed());
        } else {
            parameters.push(
                proptest::option::of(drawn)
                    .prop_map(Option::flatten)
                    .boxed(),
            );
        }
    }
    let body = match operation["requestBody"]["content"]["application/json"]["schema"] {
        Value::Null => Just(None).boxed(),
        ref schema => value_strategy(document, schema).prop_map(Some).boxed(),
    };
    let (template, method) = (template.to_owned(), method.to_uppercase());
    (parameters, body)
        .prop_map(move |(parameters, body)| {
            let mut request = Request {
                method: method.clone(),
                path: template.clone(),
                query: vec![],
                headers: vec![],
                body,
            };
            for (place, name, value) in parameters.into_iter().flatten() {
                match place.as_str() {
                    "path" => {
                        let encoded: String = url_escape(&value);
                        request.path = request.path.replace(&format!("{{{name}}}"), &encoded);
                    }
                    "query" => request.query.push((name, value)),
                    "header" => request.headers.push((name, value)),
                    other => panic!("parameter in {other}"),
                }
            }
            // Documented in words: `min_version` or `at`, not both.
            if request.query.iter().any(|(k, _)| k == "at") {
                request.query.retain(|(k, _)| k != "min_version");
            }
            request
        })
        .boxed()
}

fn url_escape(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The refusals that say a request's shape was wrong: what a request that keeps to the
/// document must never get.
fn refused_for_its_shape(status: u16, body: &Value) -> bool {
    let code = body["error"].as_str().unwrap_or("");
    status == 400 || (status == 422 && (code == "invalid_field" || code.starts_with("invalid_")))
}

/// Sends `runs` requests drawn from `base`'s document; returns what broke the contract, and
/// how many requests each operation's answers succeeded for (so that a run of nothing but
/// refusals cannot pass).
async fn conform(base: &str, runs: usize, seed: u8) -> (Vec<String>, Vec<(String, usize)>) {
    let http = reqwest::Client::new();
    let document: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|status| status.parse().unwrap())
                .collect();
            operations.push((
                format!("{} {template}", method.to_uppercase()),
                request_strategy(&document, template, method, operation),
                documented,
            ));
        }
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &[seed; 32],
        ),
    );
    let mut failures = Vec::new();
    let mut succeeded = vec![0; operations.len()];
    for run in 0..runs {
        let (_, strategy, documented) = &operations[run % operations.len()];
        let request = strategy.new_tree(&mut runner).unwrap().current();
        let mut sent = http.request(
            request.method.parse().unwrap(),
            format!("{base}{}", request.path),
        );
        sent = sent.query(&request.query);
        for (name, value) in &request.headers {
            sent = sent.header(name, value);
        }
        if let Some(body) = &request.body {
            sent = sent.json(body);
        }
        let answer = sent.send().await.unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        // The one 5xx in the contract: a `min_version` not reached within the wait.
        let not_fresh_yet = status == 504 && body["error"] == "min_version_not_reached";
        let wrong = if status >= 500 && !not_fresh_yet {
            Some("a server error")
        } else if !documented.contains(&status) {
            Some("an undocumented status")
        } else if refused_for_its_shape(status, &body) {
            Some("a request that keeps to the document refused for its shape")
        } else if status >= 400 && !(body["error"].is_string() && body["message"].is_string()) {
            Some("an error without its JSON body")
        } else {
            None
        };
        if let Some(wrong) = wrong {
            failures.push(format!("{wrong}: {request:?} answered {status} {body}"));
        }
        if (200..300).contains(&status) {
            succeeded[run % operations.len()] += 1;
        }
    }
    let succeeded = operations
        .iter()
        .map(|(name, _, _)| name.clone())
        .zip(succeeded)
        .collect();
    (failures, succeeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_drawn_from_the_documents_get_documented_answers() {
    let redis = RedisServer::start();
    let (c, q, p) = (free_port(), free_port(), free_port());
    let env = |listen: (&'static str, u16)| {
        vec![
            ("REDIS_URL", redis.url()),
            ("PROJECTOR_BLOCK_MS", "100".to_owned()),
            // `min_version` reads of versions never reached answer 504 soon.
            ("QUERY_MAX_WAIT_MS", "50".to_owned()),
            (listen.0, format!("127.0.0.1:{}", listen.1)),
        ]
    };
    let _command = Service::start("command", &[], &env(("COMMAND_LISTEN", c)));
    let _query = Service::start("query", &[], &env(("QUERY_LISTEN", q)));
    let _projector = Service::start("projector", &[], &env(("PROJECTOR_LISTEN", p)));
    let (command, query) = (
        format!("http://127.0.0.1:{c}"),
        format!("http://127.0.0.1:{q}"),
    );
    for url in [&command, &query, &format!("http://127.0.0.1:{p}")] {
        wait_healthy(&format!("{url}/healthz")).await;
    }
    let http = reqwest::Client::new();
    for user in ["u1", "u2"] {
        let registered = http
            .post(format!("{command}/users"))
            .json(&json!({"user_id": user, "name": "N", "surname": "S"}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
    }
    let liked = http
        .post(format!("{command}/users/u1/activity"))
        .json(&json!({"action": "like", "object": KNOWN_OBJECT}))
        .send()
        .await
        .unwrap();
    assert_eq!(liked.status(), 200);
    let group = http
        .post(format!("{command}/groups"))
        .json(&json!({"group_id": "g1", "name": "G", "capacity": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(group.status(), 201);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut failures, mut succeeded) = conform(&command, REQUESTS, 1).await;
    let (more, also) = conform(&query, REQUESTS, 2).await;
    failures.extend(more);
    succeeded.extend(also);
    assert!(
        failures.is_empty(),
        "{} of {} requests broke the contract:\n{}",
        failures.len(),
        2 * REQUESTS,
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every operation was answered with success some of the time: the run reached the domain,
    // not only its refusals.
    for (operation, successes) in &succeeded {
        assert!(*successes > 0, "{operation} never succeeded: {succeeded:?}");
    }
    println!("successes per operation: {succeeded:?}");
}
