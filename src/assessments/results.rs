//! Results delivered by the tool: validated, applied exactly once per assessment, idempotent
//! per (client, `external_id`), and reported as an [`AssessmentCompleted`] fact whose
//! consequences are the reactor's.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use serde_json::{Value, json};
use uuid::Uuid;

use std::collections::{BTreeMap, HashSet};

use super::{
    AssessError, AssessmentService, COMPLETED_AT_SKEW_SECS, MAX_DETAILS_BYTES, MAX_SKILLS, engine, field,
    model::{AssessmentView, ResultsInput},
    signing::sha256_hex,
};
use crate::{
    entities::{assessment, enums::AssessmentState, skill_level},
    infra::db::{WriteTxn, is_unique_violation},
    kernel::{
        audit::{self, Event},
        context::RequestContext,
        facts::{AssessmentCompleted, Fact},
        fields::FieldErrors,
        input::ClientKey,
    },
};

/// Longest `external_id` the tool may choose.
const EXTERNAL_ID_MAX: usize = 128;

/// The outcome of a results delivery: the assessment, and whether this delivery completed it.
pub struct Delivery {
    pub created: bool,
    pub assessment: AssessmentView,
}

/// A JSON value with object keys sorted at every level, so that two bodies that mean the same
/// thing hash the same whatever their key order or whitespace.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

pub fn payload_hash(body: &[u8]) -> Result<String, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    Ok(sha256_hex(&serde_json::to_vec(&canonical(&v))?))
}

/// Every rule of API.md and the issue, checked before anything is read or written.
pub fn validate_results(r: &ResultsInput, now: DateTime<Utc>) -> Result<(), AssessError> {
    let mut errors = FieldErrors::new();
    let mut e = |f: &str, m: &str| errors.push(f, m);
    match (&r.assessment_id, &r.launch_token) {
        (None, None) => e("assessment_id", "give assessment_id or launch_token"),
        (_, Some(t)) if t.is_empty() || t.len() > 128 => e("launch_token", "must be 1 to 128 characters"),
        _ => {}
    }
    if let Err(why) = ClientKey::parse(&r.external_id, EXTERNAL_ID_MAX) {
        e("external_id", &why.to_string());
    }
    if r.completed_at > now + chrono::Duration::seconds(COMPLETED_AT_SKEW_SECS) {
        e("completed_at", "must not be in the future");
    }
    if !r.overall_score.is_finite() || !(0.0..=100.0).contains(&r.overall_score) {
        e("overall_score", "must be between 0 and 100");
    }
    if r.skills.is_empty() {
        e("skills", "must list at least one skill");
    }
    if r.skills.len() > MAX_SKILLS {
        e("skills", "must list at most 100 skills");
    }
    let mut seen = HashSet::new();
    for (i, s) in r.skills.iter().enumerate() {
        if !engine::is_skill_code(&s.skill) {
            e(&format!("skills[{i}].skill"), "must match [a-z0-9_-]{1,64}");
        } else if !seen.insert(s.skill.as_str()) {
            e(&format!("skills[{i}].skill"), "is listed twice");
        }
        if !s.score.is_finite() || !(0.0..=100.0).contains(&s.score) {
            e(&format!("skills[{i}].score"), "must be between 0 and 100");
        }
    }
    if let Some(d) = &r.details
        && serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_DETAILS_BYTES
    {
        e("details", "must be at most 65536 bytes serialized");
    }
    Ok(errors.into_result()?)
}

impl AssessmentService {
    /// A repeat of a delivery already applied: 200 if it is the same body, 409 otherwise.
    fn repeat(a: &assessment::Model, hash: &str, now: DateTime<Utc>) -> Result<Delivery, AssessError> {
        if a.payload_hash.as_deref() == Some(hash) {
            Ok(Delivery { created: false, assessment: AssessmentView::of(a, now) })
        } else {
            Err(AssessError::Conflict(
                "external-id-conflict",
                "this external_id was already delivered with a different body".into(),
            ))
        }
    }

    /// Applies the tool's results in one transaction: the assessment completes, skill levels
    /// and the learning path update, notifications and audit rows are written. Exactly one of
    /// any number of concurrent deliveries completes an assessment: the completing UPDATE is
    /// conditional on `status = 'pending'`, and (client, external_id) is unique.
    pub async fn submit_results(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: ResultsInput,
        raw_body: &[u8],
    ) -> Result<Delivery, AssessError> {
        let now = Utc::now();
        let outcome = match validate_results(&input, now) {
            Ok(()) => self.apply_in_txn(ctx, client_id, &input, raw_body, now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome
            && matches!(e, AssessError::Validation(_) | AssessError::NotFound | AssessError::Conflict(..))
        {
            self.record_rejection(ctx, client_id, &input, e).await?;
        }
        outcome
    }

    async fn apply_in_txn(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        raw_body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Delivery, AssessError> {
        let hash = payload_hash(raw_body)?;
        let raw = String::from_utf8_lossy(raw_body).into_owned();
        let txn = self.db.begin_write().await?;
        // Every error path rolls back explicitly, before the writer lock is released.
        match self.apply_results(&txn, ctx, client_id, input, &hash, raw, now).await {
            Ok(d) => {
                txn.commit().await?;
                Ok(d)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// A refused delivery changes nothing, but the trail still shows that the client called and
    /// why it was refused (never the body: it is the tool's data, not ours to copy around).
    async fn record_rejection(
        &self,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        e: &AssessError,
    ) -> Result<(), AssessError> {
        let reason = match e {
            AssessError::Validation(v) => {
                json!({"kind": "validation", "fields": v.iter().map(|e| &e.field).collect::<Vec<_>>()})
            }
            AssessError::NotFound => json!({"kind": "not_found"}),
            AssessError::Conflict(slug, _) => json!({"kind": slug}),
            AssessError::Unauthenticated(_)
            | AssessError::Encoding(_)
            | AssessError::Db(_)
            | AssessError::Reaction(_) => json!({"kind": "other"}),
        };
        let mut ev = Event::new("assessment.results_rejected", Some(client_id)).details(json!({
            "actor_type": "integration_client",
            "client_id": client_id,
            "external_id": input.external_id.chars().take(128).collect::<String>(),
            "reason": reason,
        }));
        if let Some(id) = input.assessment_id {
            ev = ev.target("assessment", id);
        }
        let txn = self.db.begin_write().await?;
        audit::record(&*txn, ctx, ev).await?;
        txn.commit().await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_results(
        &self,
        write_txn: &WriteTxn,
        ctx: &RequestContext,
        client_id: Uuid,
        input: &ResultsInput,
        hash: &str,
        raw: String,
        now: DateTime<Utc>,
    ) -> Result<Delivery, AssessError> {
        let txn = &**write_txn;
        let previous = assessment::Entity::find()
            .filter(assessment::Column::ClientId.eq(client_id))
            .filter(assessment::Column::ExternalId.eq(input.external_id.as_str()))
            .one(txn)
            .await?;
        if let Some(a) = previous {
            let d = Self::repeat(&a, hash, now)?;
            audit::record(txn, ctx, delivery_event("assessment.results_repeat", client_id, &a, &input.external_id))
                .await?;
            return Ok(d);
        }

        let by_id = match input.assessment_id {
            Some(id) => Some(assessment::Entity::find_by_id(id).one(txn).await?.ok_or(AssessError::NotFound)?),
            None => None,
        };
        let by_token = match &input.launch_token {
            Some(t) => Some(Self::find_by_token(txn, t).await?.ok_or(AssessError::NotFound)?),
            None => None,
        };
        let a = match (by_id, by_token) {
            (Some(a), Some(b)) if a.id != b.id => {
                return Err(field("launch_token", "belongs to another assessment than assessment_id"));
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(field("assessment_id", "give assessment_id or launch_token")),
        };
        // A test cannot finish before it was started, allowing for a tool's clock as far behind
        // as the signature window lets it be, and the future skew allowed above.
        let tolerance = chrono::Duration::seconds(super::SIGNATURE_WINDOW_SECS + COMPLETED_AT_SKEW_SECS);
        if input.completed_at < a.created_at - tolerance {
            return Err(field("completed_at", "must not be before the assessment was started"));
        }

        let skills_json = serde_json::to_value(&input.skills)?;
        let completed = assessment::Entity::update_many()
            .col_expr(assessment::Column::Status, Expr::value(AssessmentState::Completed.as_str()))
            .col_expr(assessment::Column::CompletedAt, Expr::value(Some(input.completed_at)))
            .col_expr(assessment::Column::ReceivedAt, Expr::value(Some(now)))
            .col_expr(assessment::Column::ClientId, Expr::value(Some(client_id)))
            .col_expr(assessment::Column::ExternalId, Expr::value(Some(input.external_id.clone())))
            .col_expr(assessment::Column::PayloadHash, Expr::value(Some(hash.to_string())))
            .col_expr(assessment::Column::OverallScore, Expr::value(Some(input.overall_score)))
            .col_expr(assessment::Column::Skills, Expr::value(Some(skills_json)))
            .col_expr(assessment::Column::Details, Expr::value(input.details.clone()))
            .col_expr(assessment::Column::RawPayload, Expr::value(Some(raw)))
            .filter(assessment::Column::Id.eq(a.id))
            .filter(assessment::Column::Status.eq(AssessmentState::Pending))
            .filter(assessment::Column::ExpiresAt.gt(now))
            .exec(txn)
            .await;
        let completed = match completed {
            Ok(r) => r.rows_affected == 1,
            // Another delivery used this external_id for a different assessment first.
            Err(e) if is_unique_violation(&e) => {
                return Err(AssessError::Conflict(
                    "external-id-conflict",
                    "this external_id was already delivered with a different body".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if !completed {
            // Re-read: on PostgreSQL this statement sees whatever a concurrent delivery committed.
            let a = assessment::Entity::find_by_id(a.id).one(txn).await?.ok_or(AssessError::NotFound)?;
            if a.client_id == Some(client_id) && a.external_id.as_deref() == Some(input.external_id.as_str()) {
                let d = Self::repeat(&a, hash, now)?;
                audit::record(txn, ctx, delivery_event("assessment.results_repeat", client_id, &a, &input.external_id))
                    .await?;
                return Ok(d);
            }
            return Err(if a.status == AssessmentState::Completed {
                AssessError::Conflict("assessment-completed", "this assessment already has results".into())
            } else {
                AssessError::Conflict("assessment-expired", "this assessment expired before results arrived".into())
            });
        }

        for s in &input.skills {
            skill_level::Entity::insert(skill_level::ActiveModel {
                user_id: Set(a.user_id),
                skill: Set(s.skill.clone()),
                score: Set(s.score),
                assessment_id: Set(a.id),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([skill_level::Column::UserId, skill_level::Column::Skill])
                    .update_columns([
                        skill_level::Column::Score,
                        skill_level::Column::AssessmentId,
                        skill_level::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }
        let a = assessment::Entity::find_by_id(a.id).one(txn).await?.ok_or(AssessError::NotFound)?;
        let completed = Fact::AssessmentCompleted(AssessmentCompleted {
            assessment: a.clone(),
            client_id,
            external_id: input.external_id.clone(),
            overall_score: input.overall_score,
            skills: input.skills.len(),
        });
        self.reactor.react(write_txn, ctx, vec![completed]).await?;
        Ok(Delivery { created: true, assessment: AssessmentView::of(&a, now) })
    }
}

/// Machine deliveries are audited with the client's id as the actor (the audit trail's actor
/// has no foreign key, so a client id is as good as a user id there) and in `details`.
fn delivery_event<'a>(action: &'a str, client_id: Uuid, a: &assessment::Model, external_id: &str) -> Event<'a> {
    Event::new(action, Some(client_id)).target("assessment", a.id).details(json!({
        "actor_type": "integration_client",
        "client_id": client_id,
        "external_id": external_id,
        "user_id": a.user_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a = payload_hash(br#"{"a":1,"b":{"y":2,"x":[1,2]}}"#).unwrap();
        let b = payload_hash(b"{ \"b\": {\"x\": [1, 2], \"y\": 2}, \"a\": 1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, payload_hash(br#"{"a":2,"b":{"y":2,"x":[1,2]}}"#).unwrap());
    }
}
