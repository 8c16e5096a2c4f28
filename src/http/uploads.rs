//! Reading a project upload: the multipart body streamed part by part into a [`Staging`],
//! every limit checked while the bytes arrive, and a clear problem for each way a body can be
//! wrong (not multipart, cut off, too large, unknown parts, files without names).

use axum::{
    extract::{FromRequest, Multipart, Request, multipart::MultipartError},
    http::{StatusCode, header},
};

use super::problem::ApiError;
use crate::{
    config::UploadLimits,
    submissions::{Staging, SubmitError, inspect},
};

/// The form as read: the staged files and the note.
pub struct Upload {
    pub staging: Staging,
    pub note: String,
}

/// Refuses what can be refused from the headers alone, before a byte of the body is read.
pub fn check_headers(req: &Request, limits: &UploadLimits) -> Result<(), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "a project is handed in as multipart/form-data with `files` and `note` parts",
        ));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_bytes()) {
        return Err(SubmitError::TooLarge {
            field: "files".into(),
            detail: format!(
                "the upload is larger than the {} a submission may have",
                crate::submissions::staging::megabytes(limits.max_submission_bytes)
            ),
        }
        .into());
    }
    Ok(())
}

pub async fn read(req: Request, root: &std::path::Path, limits: &UploadLimits) -> Result<Upload, ApiError> {
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", e.body_text()))?;
    let mut staging = Staging::new(root, limits).map_err(|e| ApiError::internal_error(SubmitError::Io(e)))?;
    let mut note: Option<String> = None;
    while let Some(mut part) = form.next_field().await.map_err(malformed)? {
        match part.name() {
            Some("files") => {
                let index = staging.files().len();
                let field = format!("files[{index}]");
                let Some(name) = part.file_name().map(str::to_string) else {
                    return Err(ApiError::field(&field, "must be a file, with a file name"));
                };
                let name = inspect::check_filename(&name).map_err(|r| crate::submissions::refusal(field.clone(), r))?;
                staging.start_file(name).await?;
                while let Some(chunk) = part.chunk().await.map_err(malformed)? {
                    staging.write(&chunk).await?;
                }
                staging.finish_file().await?;
            }
            Some("note") => {
                if note.is_some() {
                    return Err(ApiError::field("note", "must be given once"));
                }
                note = Some(read_note(&mut part).await?);
            }
            other => {
                let name = other.map(|n| n.chars().filter(|c| !c.is_control()).take(40).collect::<String>());
                return Err(ApiError::field(
                    name.as_deref().unwrap_or("form"),
                    "is not a part of this form (expected `files` and `note`)",
                ));
            }
        }
    }
    let note = note.unwrap_or_default();
    staging.note_part(&note);
    Ok(Upload { staging, note })
}

/// The note is small: read whole, but never more than its limit allows.
async fn read_note(part: &mut axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    // Four bytes is the most one character takes in UTF-8.
    let cap = crate::submissions::MAX_NOTE_CHARS * 4;
    let mut bytes = Vec::new();
    while let Some(chunk) = part.chunk().await.map_err(malformed)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > cap {
            return Err(ApiError::field(
                "note",
                format!("must be at most {} characters", crate::submissions::MAX_NOTE_CHARS),
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::field("note", "must be UTF-8 text"))
}

fn malformed(e: MultipartError) -> ApiError {
    ApiError::bad_request(format!("the multipart body is malformed or was cut off: {}", e.body_text()))
}
