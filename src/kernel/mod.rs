//! The shared kernel every domain builds on: who is asking, what happened, how lists page,
//! how fields fail, the audit trail. It imports nothing above `infra` and `entities`.

pub mod audit;
pub mod context;
pub mod facts;
pub mod fields;
pub mod input;
pub mod input_schema;
pub mod pagination;
pub mod sealed;
pub mod streak;
