//! Policies a route carries beyond the guards every endpoint inherits. Each is attached by the
//! router that defines the route, so a route keeps its policy when it is renamed or moved.

use std::{collections::HashSet, sync::Arc};

use axum::middleware::from_fn;
use utoipa::openapi::{OpenApi, extensions::Extensions};
use utoipa_axum::router::OpenApiRouter;

use super::middleware;
use crate::state::AppState;

/// For routes whose abuse costs a bcrypt hash or guards an account: the stricter per-IP auth
/// budget, charged on top of the general one.
pub fn auth_budget(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router.layer(from_fn(middleware::auth_rate_limit))
}

/// The OpenAPI extension that marks an operation as not remembered for `Idempotency-Key`.
const NOT_REMEMBERED: &str = "x-idempotency-key-ignored";

/// For routes whose request or response carries credentials (passwords, tokens, one-time
/// secrets, signed machine calls): never remembered for `Idempotency-Key`, since storing them
/// would keep a secret in the database in clear.
///
/// The idempotency guard runs before routing reaches a route's own layers, so this cannot be a
/// layer: the mark goes into the route's OpenAPI operation (built from the same `routes!`
/// declaration as the route itself), and [`Unremembered::from_doc`] reads it back by route.
pub fn not_remembered(mut router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let ext = op.extensions.get_or_insert_with(Extensions::default);
            ext.insert(NOT_REMEMBERED.to_string(), serde_json::Value::Bool(true));
        }
    }
    router
}

/// The OpenAPI extension that marks an upload: a body streamed by its handler, with its own
/// size limits, deadline and `Idempotency-Key` handling.
const STREAMED: &str = "x-cifix-streamed-body";

/// For upload routes: the shared guards would buffer the body to fingerprint it (idempotency)
/// and cut it at the API-wide size and time limits. The handler streams it instead, enforces
/// the upload limits while it reads, and claims the `Idempotency-Key` itself once the body is
/// on disk. Marked like [`not_remembered`], for the same reason.
pub fn streamed_body(mut router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        for op in [&mut item.post, &mut item.put].into_iter().flatten() {
            let ext = op.extensions.get_or_insert_with(Extensions::default);
            ext.insert(STREAMED.to_string(), serde_json::Value::Bool(true));
        }
    }
    router
}

/// The route templates (as in `MatchedPath`) whose POSTs are not remembered, and those whose
/// body the handler streams.
#[derive(Clone, Default)]
pub struct Unremembered {
    not_remembered: Arc<HashSet<String>>,
    streamed: Arc<HashSet<String>>,
}

impl Unremembered {
    pub fn from_doc(doc: &OpenApi) -> Self {
        let marked = |mark: &str| -> HashSet<String> {
            doc.paths
                .paths
                .iter()
                .filter(|(_, item)| {
                    [&item.post, &item.put]
                        .into_iter()
                        .flatten()
                        .any(|op| op.extensions.as_ref().is_some_and(|e| e.contains_key(mark)))
                })
                .map(|(path, _)| path.clone())
                .collect()
        };
        Unremembered { not_remembered: Arc::new(marked(NOT_REMEMBERED)), streamed: Arc::new(marked(STREAMED)) }
    }

    /// Not remembered at all: the document shows no `Idempotency-Key` for it.
    pub fn contains(&self, route: &str) -> bool {
        self.not_remembered.contains(route)
    }

    /// The handler streams the body (and handles `Idempotency-Key` itself).
    pub fn streams(&self, route: &str) -> bool {
        self.streamed.contains(route)
    }
}
