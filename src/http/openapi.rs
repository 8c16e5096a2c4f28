//! The OpenAPI document. Handlers declare what is theirs (their success, the statuses their
//! domain answers, their inputs); [`complete`] adds what the shared guards answer on every
//! operation of a given shape, so that the document lists every status and media type the
//! server really sends without each handler repeating them.

use serde_json::{Map, Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::problem::Problem;

#[derive(OpenApi)]
#[openapi(
    info(title = "CIFIX LEARN API", description = "The HTTP contract of the CIFIX LEARN backend. \
        Every error is an RFC 9457 `application/problem+json` body; a 422 names each invalid field in `errors`."),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    tags((name = "auth"), (name = "account"), (name = "catalog"), (name = "progress"), (name = "assessments"), (name = "integrations"), (name = "achievements"), (name = "notifications"), (name = "realtime"), (name = "admin"), (name = "email"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;
impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        // Integration clients sign each request (X-Cifix-Client, -Timestamp, -Nonce, -Signature);
        // the signature header stands for the scheme here.
        components.add_security_scheme(
            "cifix_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Cifix-Signature",
                "HMAC-SHA256 over timestamp, nonce, method, path and body hash; see the README",
            ))),
        );
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];
const PROBLEM: &str = "application/problem+json";

/// Adds to every operation the responses of the guards it passes through, gives every response
/// a description, and declares every error as problem+json.
pub fn complete(doc: &mut Value, remembered_posts: &dyn Fn(&str) -> bool) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
            let remembered = method == "post" && remembered_posts(path);
            let shape = Shape::of(path, op, remembered);
            if remembered {
                add_idempotency_key(op);
            }
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else { continue };
            for (status, description) in shape.guard_statuses() {
                let entry = responses.entry(status.to_string()).or_insert_with(|| json!({}));
                if entry.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                    entry["description"] = json!(description);
                }
            }
            for (status, response) in responses.iter_mut() {
                normalise_response(status, response);
            }
        }
    }
}

/// What decides which guards answer an operation.
struct Shape {
    secured: bool,
    has_body: bool,
    has_query: bool,
    has_path_id: bool,
    remembered: bool,
}

impl Shape {
    fn of(path: &str, op: &Map<String, Value>, remembered: bool) -> Shape {
        let params = op.get("parameters").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let located = |at: &str| params.iter().any(|p| p.get("in").and_then(Value::as_str) == Some(at));
        Shape {
            secured: op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty()),
            has_body: op.contains_key("requestBody"),
            has_query: located("query") || located("header"),
            has_path_id: path.contains('{'),
            remembered,
        }
    }

    fn guard_statuses(&self) -> Vec<(u16, &'static str)> {
        let mut out = Vec::new();
        if self.has_body {
            out.push((400, "The body is not well-formed JSON."));
            out.push((413, "The body is larger than the server accepts."));
            out.push((415, "The body is not `application/json`."));
        }
        if self.has_body || self.has_query || self.remembered {
            out.push((422, "A field, query parameter or header is invalid; `errors` names each one."));
        }
        if self.secured {
            out.push((401, "No valid access token. `WWW-Authenticate` tells an expired token from an invalid one."));
        }
        if self.has_path_id {
            out.push((404, "No such resource, or not one the caller may see."));
        }
        if self.remembered {
            out.push((409, "A request with this `Idempotency-Key` is still being processed."));
        }
        out.push((429, "Too many requests; `Retry-After` says when to retry."));
        out.push((500, "An internal error; quote `request_id` when reporting it."));
        out.push((503, "The service or its database is briefly unavailable; `Retry-After` says when to retry."));
        out
    }
}

fn add_idempotency_key(op: &mut Map<String, Value>) {
    let params = op.entry("parameters").or_insert_with(|| json!([]));
    if let Some(params) = params.as_array_mut() {
        params.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes a retried create safe: the same key with the same request replays the first \
                response (with `Idempotent-Replayed: true`) for 24 hours.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"}
        }));
    }
}

fn normalise_response(status: &str, response: &mut Value) {
    let code: u16 = status.parse().unwrap_or(0);
    if response.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
        let reason = axum::http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason());
        response["description"] = json!(reason.unwrap_or("Response"));
    }
    if code >= 400 {
        response["content"] = json!({PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}});
        let headers = response.as_object_mut().map(|r| r.entry("headers").or_insert_with(|| json!({})));
        if let Some(headers) = headers.and_then(Value::as_object_mut) {
            for (name, header) in error_headers(code) {
                headers.entry(name).or_insert(header);
            }
            if headers.is_empty() {
                response.as_object_mut().map(|r| r.remove("headers"));
            }
        }
    }
}

fn error_headers(code: u16) -> Vec<(String, Value)> {
    let retry_after = || {
        json!({"description": "Seconds to wait before retrying.", "required": true,
               "schema": {"type": "string", "pattern": "^[0-9]+$"}})
    };
    match code {
        401 => vec![(
            "WWW-Authenticate".into(),
            json!({"description": "`Bearer realm=\"cifix\"`, with `error=\"invalid_token\"` and an \
                `error_description` of `the access token expired` (refresh it) or `the access token is invalid` \
                (sign in again) when a token was sent.",
                   "required": true, "schema": {"type": "string"}}),
        )],
        429 | 503 => vec![("Retry-After".into(), retry_after())],
        _ => Vec::new(),
    }
}
