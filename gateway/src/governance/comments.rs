//! A proposal's discussion: comments and replies, kept in the gateway's database in both
//! modes as the record of the deliberation. Comments are never edited or deleted (a
//! trigger refuses updates).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use super::views::CommentView;
use crate::db::comment;
use crate::error::ApiError;

/// The longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 10_000;

/// Comments in the database.
#[derive(Debug, Clone)]
pub struct Comments {
    db: DatabaseConnection,
}

fn unavailable(e: sea_orm::DbErr) -> ApiError {
    ApiError::Unavailable(format!("the discussion cannot be read now: {e}"))
}

fn view(m: comment::Model) -> CommentView {
    CommentView {
        id: m.id,
        proposal: m.proposal,
        member: m.member,
        reply_to: m.reply_to,
        body: m.body,
        created_at: m.created_at,
    }
}

impl Comments {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Adds `member`'s comment on `proposal` (a reply when `reply_to` names a comment of
    /// the same proposal).
    ///
    /// # Errors
    ///
    /// 400 for an empty or too long comment; 404 for a reply to a comment that is not in
    /// this discussion.
    pub async fn add(
        &self,
        proposal: &str,
        member: &str,
        body: &str,
        reply_to: Option<i64>,
    ) -> Result<CommentView, ApiError> {
        let body = body.trim();
        if body.is_empty() {
            return Err(ApiError::invalid_param("body", "a comment cannot be empty"));
        }
        if body.chars().count() > MAX_COMMENT_CHARS {
            return Err(ApiError::invalid_param(
                "body",
                format!("a comment is at most {MAX_COMMENT_CHARS} characters"),
            ));
        }
        if let Some(parent) = reply_to {
            let found = comment::Entity::find_by_id(parent)
                .one(&self.db)
                .await
                .map_err(unavailable)?;
            if found.is_none_or(|c| c.proposal != proposal) {
                return Err(ApiError::NotFound(format!(
                    "no comment {parent} in the discussion of {proposal}"
                )));
            }
        }
        let created = comment::Entity::insert(comment::ActiveModel {
            proposal: Set(proposal.to_owned()),
            member: Set(member.to_owned()),
            reply_to: Set(reply_to),
            body: Set(body.to_owned()),
            created_at: Set(jiff::Timestamp::now().to_string()),
            ..Default::default()
        })
        .exec_with_returning(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(view(created))
    }

    /// The discussion of `proposal`, oldest first.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn list(&self, proposal: &str) -> Result<Vec<CommentView>, ApiError> {
        Ok(comment::Entity::find()
            .filter(comment::Column::Proposal.eq(proposal))
            .order_by_asc(comment::Column::Id)
            .all(&self.db)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(view)
            .collect())
    }

    /// How many comments `proposal` has.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn count(&self, proposal: &str) -> Result<u64, ApiError> {
        comment::Entity::find()
            .filter(comment::Column::Proposal.eq(proposal))
            .count(&self.db)
            .await
            .map_err(unavailable)
    }
}
