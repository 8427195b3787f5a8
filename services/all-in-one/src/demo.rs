//! The post's scenario, played over HTTP against the running sides.

use std::fmt::Write as _;

use std::time::Duration;

use anyhow::{Context as _, bail};
use esr_app::auth::dev::Signer;
use esr_schema::{DomainEvent, UserEvent};
use esr_store::{EntryId, Store};
use esr_wiring::StoreKind;
use serde_json::{Value, json};

pub struct Urls {
    pub command: String,
    pub query: String,
}

/// Register 1 Duffy Duck and 2 Bugs Bunny; 1 kicks "Bugs"; 1 dislikes "Bugs face"; 1 adds
/// friend 2, then removes friend 2. Each user sends their own commands with a bearer token
/// `signer` made for them. Then print the category streams as `XREAD` shows them (each
/// entry's `actor` says who caused it), and both profiles.
pub async fn play(
    urls: &Urls,
    signer: &Signer,
    store: &dyn Store,
    kind: StoreKind,
) -> anyhow::Result<()> {
    match kind {
        StoreKind::Memory => println!(
            "Store: in-memory (no REDIS_URL or REDIS_CLUSTER_NODES set); the data lives in this process only.\n"
        ),
        StoreKind::Redis { partitions } => {
            println!("Store: Redis, {partitions} partition(s) per category stream.\n")
        }
        StoreKind::RedisCluster { partitions } => {
            println!("Store: Redis Cluster, {partitions} partitions per category stream.\n")
        }
    }
    let http = reqwest::Client::new();
    let token = |user: &str| {
        signer
            .token(user, &[], Duration::from_secs(600), None, None)
            .map_err(anyhow::Error::msg)
    };
    let (token_1, token_2) = (token("1")?, token("2")?);
    println!(
        "Each user sends their own commands with a bearer token signed by a key made for this demo.\n"
    );
    let command_as = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = http
            .request(method.clone(), format!("{}{path}", urls.command))
            .bearer_auth(token);
        let request = match &body {
            Some(body) => request.json(body),
            None => request,
        };
        let shown = format!(
            "{method} {path}{}",
            body.map(|b| format!(" {b}")).unwrap_or_default()
        );
        async move { call(request, &shown).await }
    };
    use reqwest::Method;
    let command = |method, path, body| command_as(&token_1, method, path, body);
    command(
        Method::POST,
        "/users",
        Some(json!({"user_id": "1", "name": "Duffy", "surname": "Duck"})),
    )
    .await
    .context(
        "the demo registers users 1 and 2: it needs a store without them (an empty Redis database)",
    )?;
    command_as(
        &token_2,
        Method::POST,
        "/users",
        Some(json!({"user_id": "2", "name": "Bugs", "surname": "Bunny"})),
    )
    .await?;
    command(
        Method::POST,
        "/users/1/activity",
        Some(json!({"action": "kick", "object": "Bugs"})),
    )
    .await?;
    command(
        Method::POST,
        "/users/1/activity",
        Some(json!({"action": "dislike", "object": "Bugs face"})),
    )
    .await?;
    command(
        Method::POST,
        "/users/1/friends",
        Some(json!({"friend_id": "2"})),
    )
    .await?;

    // The friendship policy gives 2 the friend 1 too (2's version 2).
    let friend_side = profile(&http, &token_1, urls, "2", 2).await?;
    println!(
        "  friendship is mutual: user 2's friends are {}\n",
        friend_side["friends"]
    );
    if friend_side["friends"] != json!(["1"]) {
        bail!("the friendship policy did not add 1 to 2's friends: {friend_side}");
    }

    let last = command(Method::DELETE, "/users/1/friends/2", None).await?;
    let version_of_1 = last["version"]
        .as_u64()
        .context("no version in the answer")?;

    // Wait for the read models (2 loses the friend again by the policy: version 3), so the
    // streams below hold every event.
    let one = profile(&http, &token_1, urls, "1", version_of_1).await?;
    let two = profile(&http, &token_1, urls, "2", 3).await?;

    print!("{}", xread(store).await?);
    println!("\n> GET /users/1\n{}", serde_json::to_string_pretty(&one)?);
    println!("\n> GET /users/2\n{}", serde_json::to_string_pretty(&two)?);
    Ok(())
}

async fn call(request: reqwest::RequestBuilder, shown: &str) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{shown}: no answer"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{shown}: answer is not JSON"))?;
    println!("{shown}  ->  {} {body}", status.as_u16());
    if !status.is_success() {
        bail!("{shown} failed with {status}: {body}");
    }
    Ok(body)
}

/// The profile once the read model has caught up with `version`.
async fn profile(
    http: &reqwest::Client,
    token: &str,
    urls: &Urls,
    user: &str,
    version: u64,
) -> anyhow::Result<Value> {
    let url = format!("{}/users/{user}?min_version={version}", urls.query);
    let response = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}: no answer"))?;
    let status = response.status();
    let body: Value = response.json().await.context("profile is not JSON")?;
    if !status.is_success() {
        bail!("GET {url} failed with {status}: {body}");
    }
    Ok(body)
}

/// Category streams in `redis-cli`'s XREAD layout, one block per stream (on Redis, one per
/// partition: `user_updates:{p0}`, ...); the MessagePack payload is shown decoded.
async fn xread(store: &dyn Store) -> anyhow::Result<String> {
    let mut streams: Vec<(String, Vec<esr_store::CategoryEntry>)> = Vec::new();
    for category in UserEvent::CATEGORIES {
        for entry in store.read_category(category, EntryId::ZERO, 10_000).await? {
            match streams.iter_mut().find(|(name, _)| *name == entry.stream) {
                Some((_, entries)) => entries.push(entry),
                None => streams.push((entry.stream.clone(), vec![entry])),
            }
        }
    }
    let names: Vec<&str> = streams.iter().map(|(name, _)| name.as_str()).collect();
    let zeros = vec!["0"; names.len()].join(" ");
    let mut out = format!("\n> XREAD STREAMS {} {zeros}\n", names.join(" "));
    for (n, (stream, entries)) in streams.iter().enumerate() {
        writeln!(out, "{}) 1) \"{stream}\"", n + 1)?;
        for (i, entry) in entries.iter().enumerate() {
            let lead = if i == 0 { "   2) " } else { "      " };
            writeln!(out, "{lead}{}) 1) \"{}\"", i + 1, entry.id)?;
            let decoded = entry
                .event()
                .ok()
                .and_then(|e| e.decode::<UserEvent>().ok());
            for (j, (field, value)) in entry.fields.iter().enumerate() {
                let value = match (field.as_str(), &decoded) {
                    ("payload", Some(event)) => format!(
                        "{} (MessagePack, shown decoded)",
                        serde_json::to_value(event).unwrap_or_default()
                    ),
                    _ => String::from_utf8_lossy(value).into_owned(),
                };
                let lead = if j == 0 {
                    "         2) "
                } else {
                    "            "
                };
                writeln!(out, "{lead}{}) \"{field}\"", 2 * j + 1)?;
                writeln!(
                    out,
                    "            {}) \"{}\"",
                    2 * j + 2,
                    value.replace('"', "\\\"")
                )?;
            }
        }
    }
    Ok(out)
}
