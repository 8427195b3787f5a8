"""Write a file of pipelined commands for `redis-cli --pipe`: 200,000 events as the append
script receives them (128 one-event requests of distinct users per call), or as raw XADD pairs.

    python3 gen.py append|variant|pairs <sha> <out>

`append` is the shape of crates/redis/src/lua/append.lua (per request: counter, stream,
idempotency record, category); `variant` the shape of the scripts in this folder (one hash of
counters first, then per request: stream, idempotency record, category, and the counter's
field as the request's seventh argument).
"""
import sys
import uuid

EVENTS, PER_CALL, USERS = 200_000, 128, 1000
shape, sha, out = sys.argv[1], sys.argv[2], open(sys.argv[3], "wb")
payload = bytes([0x83]) * 48
time = "2026-11-26T13:00:00.000000Z"


def resp(args):
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def event():
    return ["acted_on", str(uuid.uuid4()), time, "1", str(uuid.uuid4()), "", payload]


done = 0
while done < EVENTS:
    if shape == "pairs":
        user = f"u{done % USERS}"
        fields = ["type", "acted_on", "user_id", user, "version", "12", "event_id",
                  str(uuid.uuid4()), "occurred_at", time, "schema_version", "1",
                  "correlation_id", str(uuid.uuid4()), "causation_id", "", "payload", payload]
        out.write(resp(["XADD", f"raw:{user}", "*"] + fields))
        out.write(resp(["XADD", f"raw:cat:{done % 4}", "*"] + fields))
        done += 1
        continue
    keys, argv = ([], []) if shape == "append" else (["version:{p0}"], [])
    for j in range(PER_CALL):
        user = f"u{(done + j) % USERS}"
        if shape == "append":
            keys += [f"version:{{p0}}:{user}", f"user:{{p0}}:{user}", f"idem:{{p0}}:{user}:",
                     "user_activity:{p0}"]
            argv += ["any", "0", "1", "user_id", user, ""] + event()
        else:
            keys += [f"user:{{p0}}:{user}", f"idem:{{p0}}:{user}:", "user_activity:{p0}"]
            argv += ["any", "0", "1", "user_id", user, "", user] + event()
    out.write(resp(["EVALSHA", sha, str(len(keys))] + keys + [str(PER_CALL)] + argv))
    done += PER_CALL
