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

/// The route templates (as in `MatchedPath`) whose POSTs are not remembered.
#[derive(Clone, Default)]
pub struct Unremembered(Arc<HashSet<String>>);

impl Unremembered {
    pub fn from_doc(doc: &OpenApi) -> Self {
        let marked = doc.paths.paths.iter().filter(|(_, item)| {
            item.post.as_ref().and_then(|op| op.extensions.as_ref()).is_some_and(|e| e.contains_key(NOT_REMEMBERED))
        });
        Unremembered(Arc::new(marked.map(|(path, _)| path.clone()).collect()))
    }

    pub fn contains(&self, route: &str) -> bool {
        self.0.contains(route)
    }
}
