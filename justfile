# Recipes with stable names (the README lists them). Every recipe works on the in-memory store
# unless REDIS_URL or REDIS_CLUSTER_NODES is set.

default:
    @just --list

# Play the post's scenario on the all-in-one binary, print the streams and profiles, exit.
demo:
    cargo run --quiet --bin all-in-one -- demo

# Every test: unit, snapshot, property, contract and end-to-end.
test:
    cargo test --workspace

# Command, query and projector sides in one process, serving until Ctrl-C.
serve:
    cargo run --quiet --bin all-in-one -- serve

# The command side alone (COMMAND_LISTEN, default 127.0.0.1:8080).
command:
    cargo run --quiet --bin command

# The projector side alone (PROJECTOR_LISTEN, default 127.0.0.1:8082).
projector:
    cargo run --quiet --bin projector

# The query side alone (QUERY_LISTEN, default 127.0.0.1:8081).
query:
    cargo run --quiet --bin query

# Benchmarks against raw Redis measured in the same run (release build; starts its own
# redis-server processes). `just bench --quick` runs each measurement briefly.
bench *ARGS:
    cargo run --release --quiet -p esr-bench -- {{ARGS}}

# Minutes of commands under faults (projectors SIGKILLed and paused, Redis crashed with
# appendfsync always), then every read model checked against its history (release build;
# starts its own redis-server). `just soak --seconds 20` for a short run.
soak *ARGS:
    cargo run --release --quiet -p esr-e2e --bin soak -- {{ARGS}}

# Honest clients timed on a quiet store, then beside hostile ones (idle sockets, made-up
# methods, oversized and slow bodies, a long tail of likes, hopeless min_version waits): the
# honest p99 under siege over the quiet one (release build; starts its own redis-server).
siege:
    cargo run --release --quiet -p esr-bench -- --only siege
