//! A read-state change as it is queued in `outbox:frontend:changes` (written by the store's
//! mark-read and delete scripts, delivered by `changes.rs`), and its proto form.

use proto::frontend_service::{InboxChange, inbox_change::Kind};
use serde::{Deserialize, Serialize};
use service_runtime::email::Email;

use crate::selection::Selection;

/// A change as queued: whose notifications, what happened to which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxChangeRecord {
    pub receiver_email: String,
    /// `read` or `deleted`.
    pub kind: ChangeKind,
    /// The ids named (empty with `all`).
    pub notification_ids: Vec<String>,
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Read,
    Deleted,
}

impl InboxChangeRecord {
    fn new(email: &Email, kind: ChangeKind, which: &Selection) -> Self {
        Self {
            receiver_email: email.to_string(),
            kind,
            notification_ids: which.ids().to_vec(),
            all: matches!(which, Selection::All),
        }
    }

    pub fn read(email: &Email, which: &Selection) -> Self {
        Self::new(email, ChangeKind::Read, which)
    }

    pub fn deleted(email: &Email, which: &Selection) -> Self {
        Self::new(email, ChangeKind::Deleted, which)
    }
}

impl From<InboxChangeRecord> for InboxChange {
    fn from(change: InboxChangeRecord) -> Self {
        let kind = match change.kind {
            ChangeKind::Read => Kind::Read,
            ChangeKind::Deleted => Kind::Deleted,
        };
        Self {
            receiver_email: Some(change.receiver_email),
            kind: Some(kind.into()),
            notification_ids: change.notification_ids,
            all: Some(change.all),
        }
    }
}
