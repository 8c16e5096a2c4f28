//! The served OpenAPI document against the live server: every operation is routed, answers
//! its guard failures with statuses it documents, as problem+json, and takes its parameters
//! where the document says. A route, a parameter location or an error status that drifts
//! from the document fails here.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::support::{TestApp, User, urlencode};

struct Operation {
    method: Method,
    template: String,
    op: Map<String, Value>,
}

impl Operation {
    fn documents(&self, status: StatusCode) -> bool {
        self.op["responses"].get(status.as_str()).is_some()
    }

    fn params(&self, location: &str) -> Vec<&Map<String, Value>> {
        let all = self.op.get("parameters").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        all.iter().filter_map(Value::as_object).filter(|p| p["in"] == location).collect()
    }

    fn secured(&self) -> bool {
        self.op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().all(|r| r != &Value::Object(Map::new())))
    }

    /// Signed machine calls check the signature before anything else. (The SES webhook, the
    /// other integration, is not routed at all until its secret is configured.)
    fn machine(&self) -> bool {
        self.template.contains("/integrations/assessments/")
    }

    /// The path with every `{param}` filled with an id that names nothing.
    fn path(&self) -> String {
        let mut path = self.template.clone();
        for p in self.params("path") {
            let name = p["name"].as_str().unwrap();
            path = path.replace(&format!("{{{name}}}"), "01a23500-0000-7000-8000-000000000000");
        }
        path
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            out.push(Operation { method, template: template.clone(), op: op.as_object().unwrap().clone() });
        }
    }
    out
}

async fn document(app: &TestApp) -> Value {
    app.get_json("/api/openapi.json", None).await
}

/// What a status answer must look like for `op` to keep its contract.
async fn assert_documented(op: &Operation, what: &str, res: reqwest::Response) -> StatusCode {
    let status = res.status();
    assert!(op.documents(status), "{} answered {status} to {what}, which it does not document", op.name());
    if status.is_client_error() || status.is_server_error() {
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert_eq!(ct, "application/problem+json", "{} {status} to {what}", op.name());
    }
    status
}

/// A generated client names its methods after the operation ids: two alike and it cannot be
/// compiled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_id_is_unique() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut seen = std::collections::HashMap::new();
    for op in operations(&doc) {
        let id =
            op.op["operationId"].as_str().unwrap_or_else(|| panic!("{} has no operationId", op.name())).to_string();
        if let Some(other) = seen.insert(id.clone(), op.name()) {
            panic!("operationId {id} is used by {other} and {}", op.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_routed_and_refuses_a_caller_without_credentials_as_documented() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 60, "{} operations", ops.len());
    for op in &ops {
        let mut req = app.req(op.method.clone(), &op.path(), None);
        if op.op.contains_key("requestBody") {
            req = req.json(&serde_json::json!({}));
        }
        let res = req.send().await.unwrap();
        let challenge = res.headers().get("www-authenticate").cloned();
        let status = assert_documented(op, "a request without credentials", res).await;
        if op.secured() || op.machine() {
            // Not the router's 404 or 405: the route exists and its guard refused the caller.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", op.name());
            assert!(challenge.is_some(), "{}: a 401 carries WWW-Authenticate", op.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_is_refused_as_documented_when_malformed_or_not_json() {
    let app = TestApp::spawn().await;
    let admin = app.user("contract-admin", "admin").await;
    let doc = document(&app).await;
    for op in operations(&doc).iter().filter(|op| op.op.contains_key("requestBody") && !op.machine()) {
        if op.op["requestBody"]["content"].get("application/json").is_none() {
            continue;
        }
        let res = app.req(op.method.clone(), &op.path(), admin.auth()).header("content-type", "text/plain").body("x");
        let status = assert_documented(op, "a text/plain body", res.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", op.name());

        let res = app.req(op.method.clone(), &op.path(), admin.auth()).header("content-type", "application/json");
        let status = assert_documented(op, "malformed JSON", res.body("{\"a\":").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", op.name());
    }
}

/// A value the parameter's schema accepts.
fn valid_value(schema: &Value, doc: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return valid_value(&doc["components"]["schemas"][name], doc);
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        return valid_value(one.iter().find(|s| s["type"] != "null").unwrap(), doc);
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e[0].as_str().unwrap().to_string();
    }
    let ty = match &schema["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").cloned().unwrap_or_default(),
        t => t.clone(),
    };
    match (ty.as_str().unwrap_or_default(), schema.get("format").and_then(Value::as_str)) {
        ("integer", _) => schema.get("minimum").and_then(Value::as_i64).map(|m| m.max(1)).unwrap_or(1).to_string(),
        ("boolean", _) => "true".into(),
        (_, Some("uuid")) => "01a23500-0000-7000-8000-000000000000".into(),
        (_, Some("date-time")) => "2026-01-01T00:00:00Z".into(),
        (_, Some("date")) => chrono::Utc::now().date_naive().to_string(),
        _ => match schema.get("pattern").and_then(Value::as_str) {
            Some(p) if p.starts_with("^[0-9a-fA-F]{8}") => "01a23500-0000-7000-8000-000000000000".into(),
            Some(p) if p.starts_with("^(") => p[2..].split(['|', ')']).next().unwrap().to_string(),
            _ => "a".into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parameter_is_taken_where_the_document_puts_it() {
    let app = TestApp::spawn().await;
    let admin: User = app.user("params-admin", "admin").await;
    let doc = document(&app).await;
    for op in operations(&doc) {
        let in_template: Vec<String> =
            op.template.split('{').skip(1).map(|s| s.split('}').next().unwrap().to_string()).collect();
        let declared: Vec<String> = op.params("path").iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(in_template, declared, "{}: path parameters", op.name());

        for p in op.params("query") {
            let name = p["name"].as_str().unwrap();
            let value = valid_value(&p["schema"], &doc);
            let path = format!("{}?{name}={}", op.path(), urlencode(&value));
            let res = app.req(op.method.clone(), &path, admin.auth()).send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or_default();
            let named =
                body["errors"].as_array().into_iter().flatten().any(|e| e["field"] == name || e["field"] == "query");
            assert!(
                !(status == StatusCode::UNPROCESSABLE_ENTITY && named),
                "{}: the server refused documented query parameter {name}={value}: {body}",
                op.name()
            );
        }
    }
}
