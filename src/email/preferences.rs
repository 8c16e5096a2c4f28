//! What a user lets us send them: preferences per category and one-click unsubscribe links
//! signed with a key of their own.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use super::{Category, EmailError, EmailService};
use crate::{
    entities::{notification_preference, user},
    kernel::{
        audit::{self, Event},
        context::{Principal, RequestContext},
    },
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPreferences {
    pub achievements: bool,
    pub progress_digest: bool,
    pub assessment_results: bool,
    /// An email when the account is signed in to from a device not seen before.
    pub new_sign_in: bool,
    /// An email when an instructor reviews one of the student's projects.
    pub project_reviews: bool,
}

impl Default for EmailPreferences {
    fn default() -> Self {
        EmailPreferences {
            achievements: true,
            progress_digest: true,
            assessment_results: true,
            new_sign_in: true,
            project_reviews: true,
        }
    }
}

impl EmailPreferences {
    pub fn allows(&self, c: Category) -> bool {
        match c {
            Category::Security => true,
            Category::NewSignIn => self.new_sign_in,
            Category::Achievements => self.achievements,
            Category::ProgressDigest => self.progress_digest,
            Category::AssessmentResults => self.assessment_results,
            Category::ProjectReviews => self.project_reviews,
        }
    }
}

/// A partial update: fields left out keep their value.
#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPreferencesPatch {
    pub achievements: Option<bool>,
    pub progress_digest: Option<bool>,
    pub assessment_results: Option<bool>,
    pub new_sign_in: Option<bool>,
    pub project_reviews: Option<bool>,
}

impl EmailService {
    pub(super) async fn preferences_in<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: Uuid,
    ) -> Result<EmailPreferences, DbErr> {
        Ok(notification_preference::Entity::find_by_id(user_id)
            .one(db)
            .await?
            .map(|p| EmailPreferences {
                achievements: p.achievements,
                progress_digest: p.progress_digest,
                assessment_results: p.assessment_results,
                new_sign_in: p.new_sign_in,
                project_reviews: p.project_reviews,
            })
            .unwrap_or_default())
    }

    pub async fn preferences(&self, p: &Principal) -> Result<EmailPreferences, EmailError> {
        Ok(self.preferences_in(&self.db.conn, p.user_id).await?)
    }

    async fn store_preferences<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: Uuid,
        prefs: EmailPreferences,
    ) -> Result<(), DbErr> {
        let row = notification_preference::ActiveModel {
            user_id: Set(user_id),
            achievements: Set(prefs.achievements),
            progress_digest: Set(prefs.progress_digest),
            assessment_results: Set(prefs.assessment_results),
            new_sign_in: Set(prefs.new_sign_in),
            project_reviews: Set(prefs.project_reviews),
            updated_at: Set(Utc::now()),
        };
        use notification_preference::Column as C;
        notification_preference::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::UserId)
                    .update_columns([
                        C::Achievements,
                        C::ProgressDigest,
                        C::AssessmentResults,
                        C::NewSignIn,
                        C::ProjectReviews,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    pub async fn update_preferences(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        patch: EmailPreferencesPatch,
    ) -> Result<EmailPreferences, EmailError> {
        let txn = self.db.begin_write().await?;
        let mut prefs = self.preferences_in(&*txn, p.user_id).await?;
        prefs.achievements = patch.achievements.unwrap_or(prefs.achievements);
        prefs.progress_digest = patch.progress_digest.unwrap_or(prefs.progress_digest);
        prefs.assessment_results = patch.assessment_results.unwrap_or(prefs.assessment_results);
        prefs.new_sign_in = patch.new_sign_in.unwrap_or(prefs.new_sign_in);
        prefs.project_reviews = patch.project_reviews.unwrap_or(prefs.project_reviews);
        self.store_preferences(&*txn, p.user_id, prefs).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.preferences_update", Some(p.user_id))
                .target("user", p.user_id)
                .details(serde_json::to_value(prefs).expect("serialisable")),
        )
        .await?;
        txn.commit().await?;
        Ok(prefs)
    }

    fn unsubscribe_sig(&self, user_id: Uuid, category: Category) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.settings.unsubscribe_key).expect("any key length");
        mac.update(user_id.as_bytes());
        mac.update(b":");
        mac.update(category.as_str().as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// `{user id}.{category}.{HMAC}`: no expiry, since an unsubscribe link must keep working
    /// as long as the mail sits in someone's inbox; it can only turn one category off.
    pub fn unsubscribe_token(&self, user_id: Uuid, category: Category) -> String {
        format!(
            "{}.{}.{}",
            user_id.simple(),
            category.as_str(),
            URL_SAFE_NO_PAD.encode(self.unsubscribe_sig(user_id, category))
        )
    }

    pub fn unsubscribe_url(&self, user_id: Uuid, category: Category) -> String {
        self.link(&format!("/api/v1/email/unsubscribe?token={}", self.unsubscribe_token(user_id, category)))
    }

    pub fn verify_unsubscribe_token(&self, token: &str) -> Result<(Uuid, Category), EmailError> {
        let mut parts = token.splitn(3, '.');
        let (Some(uid), Some(cat), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::InvalidToken);
        };
        let uid = Uuid::parse_str(uid).map_err(|_| EmailError::InvalidToken)?;
        let cat = Category::parse(cat).filter(|c| c.optional()).ok_or(EmailError::InvalidToken)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| EmailError::InvalidToken)?;
        use subtle::ConstantTimeEq;
        if sig.len() != 16 || !bool::from(sig.ct_eq(&self.unsubscribe_sig(uid, cat))) {
            return Err(EmailError::InvalidToken);
        }
        Ok((uid, cat))
    }

    /// RFC 8058 one-click unsubscribe: turns one category off. Idempotent.
    pub async fn unsubscribe(&self, ctx: &RequestContext, token: &str) -> Result<Category, EmailError> {
        let (user_id, category) = self.verify_unsubscribe_token(token)?;
        let txn = self.db.begin_write().await?;
        if user::Entity::find_by_id(user_id).one(&*txn).await?.is_none() {
            return Err(EmailError::InvalidToken);
        }
        let mut prefs = self.preferences_in(&*txn, user_id).await?;
        match category {
            Category::Security => return Err(EmailError::InvalidToken),
            Category::NewSignIn => prefs.new_sign_in = false,
            Category::Achievements => prefs.achievements = false,
            Category::ProgressDigest => prefs.progress_digest = false,
            Category::AssessmentResults => prefs.assessment_results = false,
            Category::ProjectReviews => prefs.project_reviews = false,
        }
        self.store_preferences(&*txn, user_id, prefs).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("email.unsubscribe", None)
                .target("user", user_id)
                .details(json!({"category": category.as_str(), "via": "one_click"})),
        )
        .await?;
        txn.commit().await?;
        Ok(category)
    }
}
