//! `GET /openapi.json`: utoipa's document of the routes, completed with every
//! constraint the server enforces, so that a request valid by the schema is never
//! refused as malformed (a schema-driven client or fuzzer can rely on it).
//!
//! Text limits: the server counts UTF-8 bytes, JSON Schema's `maxLength` counts
//! characters (one to four bytes each). `text` is therefore either ASCII of up to the
//! limit, or any text of up to a quarter of it: both never exceed the limit in bytes,
//! and full-length ASCII messages stay valid.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::routes::ApiDoc;

/// `^[A-Za-z0-9_.-]{1,64}$` (PROTOCOL.md §2).
const USER: &str = "^[A-Za-z0-9_.-]{1,64}$";
/// `^[A-Za-z0-9_.:-]{1,64}$` (PROTOCOL.md §2).
const ROOM: &str = "^[A-Za-z0-9_.:-]{1,64}$";
/// A room, or `@user`.
const CHANNEL: &str = "^(@[A-Za-z0-9_.-]{1,64}|[A-Za-z0-9_.:-]{1,64})$";
/// A `cid` is echoed back in every copy of the message: kept short.
const MAX_CID: usize = 256;

fn name(pattern: &str, description: &str) -> Value {
    let max = if pattern == CHANNEL { 65 } else { 64 };
    json!({"type": "string", "pattern": pattern, "minLength": 1, "maxLength": max,
        "description": description})
}

fn text(max_bytes: usize) -> Value {
    json!({
        "description": format!("1 to {max_bytes} bytes of UTF-8 (CHAT_MAX_MESSAGE_BYTES): \
            ASCII up to {max_bytes} characters, any text up to {} characters", max_bytes / 4),
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": max_bytes, "pattern": "^[\\x00-\\x7F]*$"},
            {"type": "string", "minLength": 1, "maxLength": (max_bytes / 4).max(1)},
        ],
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema":
        {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// Path, method, who may call it, and the pattern of each path parameter.
type Operation = (
    &'static str,
    &'static str,
    Who,
    &'static [(&'static str, &'static str)],
);

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Who {
    /// A user token or an API key.
    Anyone,
    /// An API key only (a user token answers 403).
    Server,
    /// Also nobody, in dev mode.
    DevOpen,
    /// No credentials at all.
    Public,
}

fn security(who: Who) -> Value {
    match who {
        Who::Anyone => json!([{"userToken": []}, {"apiKey": []}]),
        Who::Server => json!([{"apiKey": []}]),
        Who::DevOpen => json!([{"userToken": []}, {"apiKey": []}, {}]),
        Who::Public => json!([]),
    }
}

/// The document, for a server whose text limit is `max_text_bytes`.
pub fn document(max_text_bytes: usize) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];

    let p = &mut schemas["PublishRequest"];
    p["properties"]["text"] = text(max_text_bytes);
    p["properties"]["cid"] = json!({"type": "string", "maxLength": MAX_CID,
        "description": "the client's id of the message, echoed in the ack and the message"});
    // Required here though a user may omit it: with an API key it is, and a user who
    // names someone else is refused with 403, never as malformed.
    p["properties"]["from"] = name(
        USER,
        "who the message is from: any user with an API key; a user token may only name its own user (and may leave it out)",
    );
    p["required"] = json!(["text", "from"]);

    for schema in ["MemberRequest", "DevTokenRequest"] {
        schemas[schema]["properties"]["user"] = name(USER, "user id");
    }

    // /chat/send: a message goes to a room or @user and needs its text; join and leave
    // take a room.
    let sender = name(USER, "who publishes, or whose connections join or leave");
    schemas["ChatSendRequest"] = json!({
        "description": "`POST /chat/send`: the original proof-of-concept contract.",
        "anyOf": [
            {"type": "object", "required": ["sender", "receiver", "text"], "properties": {
                "sender": sender, "receiver": name(CHANNEL, "a room, or @user for a direct message"),
                "text": text(max_text_bytes),
                "event": {"type": "string", "enum": ["message"], "default": "message"}}},
            {"type": "object", "required": ["sender", "receiver", "event"], "properties": {
                "sender": sender, "receiver": name(ROOM, "the room to join or leave"),
                "text": {"type": "string", "description": "ignored"},
                "event": {"type": "string", "enum": ["join", "leave"]}}},
        ],
    });

    let components = doc["components"].as_object_mut().expect("components");
    components.insert(
        "securitySchemes".into(),
        json!({
            "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "a user JWT (`sub` = the user; POST /v1/auth/dev-token in dev mode)"},
            "apiKey": {"type": "http", "scheme": "bearer",
                "description": "a server API key (CHAT_API_KEYS): a trusted backend, acts as any user"},
        }),
    );

    let operations: [Operation; 8] = [
        ("/chat/send", "post", Who::DevOpen, &[]),
        (
            "/v1/rooms/{room}/messages",
            "post",
            Who::Anyone,
            &[("room", ROOM)],
        ),
        (
            "/v1/rooms/{room}/messages",
            "get",
            Who::Anyone,
            &[("room", CHANNEL)],
        ),
        (
            "/v1/users/{user}/messages",
            "post",
            Who::Anyone,
            &[("user", USER)],
        ),
        (
            "/v1/rooms/{room}/presence",
            "get",
            Who::Anyone,
            &[("room", ROOM)],
        ),
        (
            "/v1/rooms/{room}/members",
            "post",
            Who::Server,
            &[("room", ROOM)],
        ),
        (
            "/v1/rooms/{room}/members/{user}",
            "delete",
            Who::Server,
            &[("room", ROOM), ("user", USER)],
        ),
        ("/v1/auth/dev-token", "post", Who::Public, &[]),
    ];
    for (path, method, who, params) in operations {
        let op = &mut doc["paths"][path][method];
        op["security"] = security(who);
        let params_of_op = op.get_mut("parameters").and_then(Value::as_array_mut);
        for param in params_of_op.into_iter().flatten() {
            let pattern = params
                .iter()
                .find(|(n, _)| param["name"] == *n)
                .map(|(_, p)| *p);
            if let Some(pattern) = pattern {
                let description = param["description"].clone();
                param["schema"] = name(pattern, description.as_str().unwrap_or_default());
            }
        }
        let responses = op["responses"].as_object_mut().expect("responses");
        for (status, answer) in responses.iter_mut() {
            if answer["description"] == "" {
                answer["description"] = json!(describe(status));
            }
        }
        // Any path can miss the router (a client that normalizes `..` away), and any
        // body can be too large.
        responses
            .entry("404")
            .or_insert_with(|| error_response("no such route (or dev mode off)"));
        if method == "post" {
            responses
                .entry("413")
                .or_insert_with(|| error_response(describe("413")));
        }
        for answer in responses.values_mut() {
            answer["headers"]["X-Request-Id"] = json!({
                "description": "the request's own X-Request-Id when sane, else a new one",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}});
        }
    }
    if let Some(params) =
        doc["paths"]["/v1/rooms/{room}/messages"]["get"]["parameters"].as_array_mut()
    {
        params.retain(|p| p["in"] != "query");
        params.push(history_page());
    }
    doc
}

/// The history page as one exploded query object (`?since=1&limit=5`): separate
/// parameters could not say that `since` and `before` exclude each other.
fn history_page() -> Value {
    let seq = |description: &str| {
        json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX,
            "description": description})
    };
    let limit = json!({"type": "integer", "minimum": 1, "maximum": crate::routes::MAX_LIMIT,
        "default": crate::routes::DEFAULT_LIMIT, "description": "at most this many"});
    json!({
        "name": "page", "in": "query", "required": false, "style": "form", "explode": true,
        "description": "since (ascending) or before (newest first), not both; at most limit",
        "schema": {"oneOf": [
            {"type": "object", "additionalProperties": false, "properties": {
                "since": seq("messages with a seq greater than this, ascending"),
                "limit": limit.clone()}},
            {"type": "object", "additionalProperties": false, "required": ["before"],
                "properties": {
                "before": seq("messages with a seq smaller than this, newest first"),
                "limit": limit}},
        ]},
    })
}

fn describe(status: &str) -> &'static str {
    match status {
        "200" => "ok",
        "201" => "stored and published",
        "202" => "sent to the user's live connections, on every replica",
        "400" => "malformed: a name, the body or the query (bad_request)",
        "401" => "no valid credentials (unauthorized)",
        "403" => "these credentials may not do this (forbidden)",
        "404" => "no such route (not_found)",
        "413" => "text over CHAT_MAX_MESSAGE_BYTES, or a body over 1 MiB (too_large)",
        "503" => "the engine (Redis) does not answer (unavailable)",
        _ => "see the error body",
    }
}
