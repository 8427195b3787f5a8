//! Raw Redis on the same server: what our figures are divided by.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::measure::{self, Counted};

/// A script shaped like our append: a version check, two XADDs, the counter.
const APPEND_SHAPED: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= 'any' and tonumber(ARGV[1]) ~= v then return {0, v} end
v = v + 1
redis.call('XADD', KEYS[2], v .. '-0', unpack(ARGV, 2))
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], v)
return {1, v}
";

/// An XRANGE entry: id and field/value pairs.
type RawEntry = (String, Vec<(String, Vec<u8>)>);

/// Entry fields of the same count and sizes as ours (9 fields, ~60-byte payload).
pub fn entry_fields() -> Vec<(String, Vec<u8>)> {
    [
        ("type", "acted_on".as_bytes().to_vec()),
        ("user_id", b"bench-user-0001".to_vec()),
        ("version", b"12".to_vec()),
        ("event_id", uuid::Uuid::now_v7().to_string().into_bytes()),
        ("occurred_at", b"2026-11-26T13:00:00.000000Z".to_vec()),
        ("schema_version", b"1".to_vec()),
        (
            "correlation_id",
            uuid::Uuid::now_v7().to_string().into_bytes(),
        ),
        (
            "causation_id",
            uuid::Uuid::now_v7().to_string().into_bytes(),
        ),
        ("payload", vec![0x83; 48]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub async fn connect(url: &str) -> anyhow::Result<MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// XADD of our entry's fields, `tasks` concurrent writers on their own streams.
pub async fn xadd(conn: &MultiplexedConnection, tasks: usize, duration: Duration) -> Counted {
    let conn = conn.clone();
    let fields = entry_fields();
    measure::run_for(tasks, duration, move |task, _| {
        let (mut conn, fields) = (conn.clone(), fields.clone());
        async move {
            xadd_cmd(&format!("raw:xadd:{task}"), &fields)
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        }
    })
    .await
}

fn evalsha(
    script: &redis::Script,
    keys: [String; 3],
    expected: &str,
    fields: &[(String, Vec<u8>)],
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(3).arg(&keys).arg(expected);
    for (k, v) in fields {
        cmd.arg(k).arg(v);
    }
    cmd
}

fn keys_for(task: usize, round: &str) -> [String; 3] {
    [
        format!("raw:{round}:{task}:version"),
        format!("raw:{round}:{task}:user"),
        format!("raw:{round}:cat:{}", task % 4),
    ]
}

/// The append-shaped script, `tasks` concurrent writers each on its own user.
pub async fn evalsha_append(
    conn: &MultiplexedConnection,
    tasks: usize,
    duration: Duration,
    round: &str,
) -> anyhow::Result<Counted> {
    let script = redis::Script::new(APPEND_SHAPED);
    script
        .prepare_invoke()
        .load_async(&mut conn.clone())
        .await?;
    let (conn, fields, round) = (conn.clone(), entry_fields(), round.to_owned());
    Ok(measure::run_for(tasks, duration, move |task, i| {
        let cmd = evalsha(&script, keys_for(task, &round), &i.to_string(), &fields);
        let mut conn = conn.clone();
        async move { matches!(cmd.query_async::<(i64, i64)>(&mut conn).await, Ok((1, _))) }
    })
    .await)
}

/// `XADD key * field value ...`.
fn xadd_cmd(key: &str, fields: &[(String, Vec<u8>)]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (k, v) in fields {
        cmd.arg(k).arg(v);
    }
    cmd
}

/// Pipelines of `batch` events, each added to the pipeline by `add(pipe, event)`, sent one
/// after another for `duration`: events per second.
async fn pipelined_rate(
    conn: &MultiplexedConnection,
    batch: usize,
    duration: Duration,
    add: impl Fn(&mut redis::Pipeline, usize),
) -> anyhow::Result<f64> {
    let mut conn = conn.clone();
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < duration {
        let mut pipe = redis::pipe();
        for event in 0..batch {
            add(&mut pipe, event);
        }
        pipe.query_async::<()>(&mut conn).await?;
        done += batch;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Pipelines of `batch` append-shaped calls on distinct users: events per second.
pub async fn evalsha_pipelined(
    conn: &MultiplexedConnection,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let script = redis::Script::new(APPEND_SHAPED);
    script
        .prepare_invoke()
        .load_async(&mut conn.clone())
        .await?;
    let fields = entry_fields();
    pipelined_rate(conn, batch, duration, |pipe, user| {
        pipe.add_command(evalsha(&script, keys_for(user, "pipe"), "any", &fields));
    })
    .await
}

/// The ceiling for any batch append keeping two copies: pipelines of `batch` pairs of plain
/// XADDs (a user stream and a category stream per event), no script, no check. Events/s.
pub async fn xadd_pairs_pipelined(
    conn: &MultiplexedConnection,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let fields = entry_fields();
    pipelined_rate(conn, batch, duration, |pipe, user| {
        pipe.add_command(xadd_cmd(&format!("raw:pairs:{user}"), &fields));
        pipe.add_command(xadd_cmd(&format!("raw:pairs:cat:{}", user % 4), &fields));
    })
    .await
}

/// Median time of one XRANGE over a stream of `len` entries of our size, in ms.
pub async fn xrange_ms(
    conn: &MultiplexedConnection,
    len: usize,
    runs: usize,
) -> anyhow::Result<f64> {
    let key = format!("raw:xrange:{len}");
    let mut conn = conn.clone();
    let fields = entry_fields();
    for chunk in 0..len.div_ceil(1000) {
        let mut pipe = redis::pipe();
        for _ in 0..1000.min(len - chunk * 1000) {
            pipe.add_command(xadd_cmd(&key, &fields)).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    measure::median_ms(runs, || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            // Paged like our load, 1000 at a time.
            let mut from = "-".to_owned();
            loop {
                let page: Vec<RawEntry> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                match page.last() {
                    Some((id, _)) if page.len() == 1000 => from = format!("({id}"),
                    _ => return Ok(()),
                }
            }
        }
    })
    .await
}

/// A consumer group draining `stream` with XREADGROUP COUNT 1000 and XACK: entries per second.
pub async fn group_drain(
    conn: &MultiplexedConnection,
    streams: &[String],
    total: usize,
) -> anyhow::Result<f64> {
    drain(conn, streams, total, "raw", false).await
}

/// [`group_drain`] plus, for every entry, one `HSET` of a small hash (its id and a field),
/// pipelined with the batch's `XACK`: the least a projection that stores something per event
/// must do.
pub async fn group_drain_with_writes(
    conn: &MultiplexedConnection,
    streams: &[String],
    total: usize,
) -> anyhow::Result<f64> {
    drain(conn, streams, total, "raw_writes", true).await
}

async fn drain(
    conn: &MultiplexedConnection,
    streams: &[String],
    total: usize,
    group: &str,
    write: bool,
) -> anyhow::Result<f64> {
    let mut conn = conn.clone();
    for stream in streams {
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
    }
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let mut got_any = false;
        for stream in streams {
            let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg("raw-consumer")
                .arg("COUNT")
                .arg(1000)
                .arg("STREAMS")
                .arg(stream)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            for key in reply.keys {
                let ids: Vec<String> = key.ids.iter().map(|e| e.id.clone()).collect();
                if ids.is_empty() {
                    continue;
                }
                got_any = true;
                done += ids.len();
                let mut pipe = redis::pipe();
                if write {
                    for id in &ids {
                        pipe.cmd("HSET")
                            .arg(format!("raw_model:{{p0}}:{id}"))
                            .arg("version")
                            .arg(id)
                            .arg("name")
                            .arg("Duffy")
                            .ignore();
                    }
                }
                pipe.cmd("XACK").arg(&key.key).arg(group).arg(&ids).ignore();
                pipe.query_async::<()>(&mut conn).await?;
            }
        }
        if !got_any {
            break;
        }
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// CPU seconds the server has used (`INFO cpu`: user + system): what a figure costs Redis
/// itself, steadier than a rate on a shared machine.
pub async fn server_cpu_seconds(conn: &MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn.clone())
        .await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in INFO cpu"))
    };
    Ok(field("used_cpu_user:")? + field("used_cpu_sys:")?)
}

/// Redis's own used_memory, in bytes.
pub async fn used_memory(conn: &MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn.clone())
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))
}

/// Bytes of Redis memory per raw XADD entry of our size, over `count` entries in one stream.
pub async fn bytes_per_entry(
    conn: &MultiplexedConnection,
    count: usize,
    fields_of: impl Fn(usize) -> Vec<(String, Vec<u8>)>,
) -> anyhow::Result<f64> {
    let before = used_memory(conn).await?;
    let mut conn2 = conn.clone();
    for chunk in 0..count.div_ceil(1000) {
        let mut pipe = redis::pipe();
        for j in 0..1000.min(count - chunk * 1000) {
            pipe.add_command(xadd_cmd("raw:memory", &fields_of(chunk * 1000 + j)))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn2).await?;
    }
    Ok((used_memory(conn).await? - before) / count as f64)
}
