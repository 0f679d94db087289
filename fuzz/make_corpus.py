#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: fuzz/corpus/<target>/.

Valid seeds are every frame type of PROTOCOL.md §3 and the real HTTP request bodies
of §4, in JSON (as serde_json writes them) and in MessagePack (as
rmp_serde::to_vec_named writes them: maps with string keys, smallest integer
encodings, absent optional fields omitted); invalid seeds are the usual mistakes.
Only the standard library is used (a tiny MessagePack encoder below).
Run from anywhere: python3 fuzz/make_corpus.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def mp(v):
    """MessagePack, as rmp_serde::to_vec_named writes our types."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if 0 <= v <= 0xFF:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v <= 0xFFFFFFFFFFFFFFFF:
            return b"\xcf" + struct.pack(">Q", v)
        if -32 <= v < 0:
            return struct.pack(">b", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) <= 0xFF:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def js(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()


SINCE = {"epoch": "e1", "seq": 4}
CLIENT = {
    "connect_token": {"type": "connect", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln"},
    "connect_user_since": {"type": "connect", "user": "alice", "since": SINCE},
    "join": {"type": "join", "room": "general"},
    "join_since": {"type": "join", "room": "general", "since": {"epoch": "e", "seq": 18446744073709551615}},
    "leave": {"type": "leave", "room": "general"},
    "send_room": {"type": "send", "room": "general", "text": "hi \u2713", "cid": "c1"},
    "send_dm": {"type": "send", "to": "bob", "text": "psst"},
    "typing": {"type": "typing", "room": "general"},
    "ping": {"type": "ping"},
}
MESSAGE = {"room": "@bob", "seq": 7, "epoch": "abc", "from": "alice", "text": "hello",
           "ts": 1700000000000, "to": "bob", "cid": "c1"}
SERVER = {
    "connected": {"type": "connected", "user": "alice", "conn": "c-1", "channel": "@alice",
                  "epoch": "e", "seq": 0, "missed": 2, "recovered": True},
    "joined": {"type": "joined", "room": "general", "epoch": "e", "seq": 3, "missed": 2,
               "recovered": False},
    "left": {"type": "left", "room": "general"},
    "message": {"type": "message", **MESSAGE},
    "ack": {"type": "ack", "cid": "c1", "room": "general", "seq": 9},
    "presence": {"type": "presence", "room": "general", "user": "bob", "event": "leave"},
    "typing_s": {"type": "typing", "room": "general", "user": "bob"},
    "reconnect": {"type": "reconnect", "after_ms": 1500},
    "pong": {"type": "pong"},
    "error": {"type": "error", "code": "rate_limited", "message": "slow down", "cid": "c2"},
}
BODIES = {
    "chat_send": {"sender": "alice", "receiver": "general", "text": "hello", "event": "message"},
    "chat_send_dm": {"sender": "alice", "receiver": "@bob", "text": "psst"},
    "chat_send_join": {"sender": "alice", "receiver": "general", "event": "join"},
    "publish": {"text": "hello", "cid": "c1"},
    "publish_from": {"text": "from a backend", "from": "system"},
    "member": {"user": "bob"},
    "dev_token": {"user": "alice"},
}

# Invalid inputs, and valid ones that are unusual (unknown fields are ignored).
WS_JSON_BAD = {
    "bad_not_json": b"{not json",
    "bad_unknown_type": js({"type": "dance"}),
    "bad_room_number": b'{"type":"join","room":5}',
    "extra_fields_nested": b'{"type":"join","room":"r","extra":[1,{"a":null},-2.5e3,"\\u00e9"]}',
}
WS_MP_BAD = {
    "bad_reserved_byte": b"\xc1\xff\x00",
    "bad_unknown_type": mp({"type": "dance"}),
    "bad_truncated": mp(CLIENT["send_room"])[:-3],
    "extra_fields_nested": mp({"type": "join", "room": "r", "extra": [1, {"a": None}, -2, b"\x00\xff"]}),
}
BODY_JSON_BAD = {
    "bad_missing_receiver": js({"sender": "alice", "text": "x"}),
    "bad_event": js({"sender": "a", "receiver": "b", "event": "dance"}),
    "bad_text_number": b'{"text":42,"user":7}',
    "bad_not_utf8": b'{"user":"\xff\xfe"}',
}
BODY_MP_BAD = {
    "bad_missing_receiver": mp({"sender": "alice", "text": "x"}),
    "bad_event": mp({"sender": "a", "receiver": "b", "event": "dance"}),
    "bad_text_number": mp({"text": 42, "user": 7}),
    "array_form": mp(["bob"]),  # accepted: rmp_serde also reads a struct from an array
}


def write(target, files):
    d = os.path.join(CORPUS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


frames = {**CLIENT, **SERVER}
write("ws_json", {**{k + ".json": js(v) for k, v in frames.items()},
                  **{k + ".json": v for k, v in WS_JSON_BAD.items()}})
write("ws_msgpack", {**{k + ".mp": mp(v) for k, v in frames.items()},
                     **{k + ".mp": v for k, v in WS_MP_BAD.items()}})
write("http_body_json", {**{k + ".json": js(v) for k, v in BODIES.items()},
                         **{k + ".json": v for k, v in BODY_JSON_BAD.items()}})
write("http_body_msgpack", {**{k + ".mp": mp(v) for k, v in BODIES.items()},
                            **{k + ".mp": v for k, v in BODY_MP_BAD.items()}})
roundtrip = {}
for k, v in CLIENT.items():
    roundtrip[k + ".json"] = js(v)
    roundtrip[k + ".mp"] = mp(v)
for k in ("connected", "message"):
    roundtrip[k + ".json"] = js(SERVER[k])
    roundtrip[k + ".mp"] = mp(SERVER[k])
write("roundtrip", roundtrip)
