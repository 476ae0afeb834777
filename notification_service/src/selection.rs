//! Which of a receiver's notifications a change applies to: one parser for the REST and the
//! gRPC edge, so both refuse the same requests (400 / `INVALID_ARGUMENT`).

use service_runtime::limits;

use crate::Error;

/// Most ids one request may name (the largest page a list serves, so one page can be marked
/// or deleted at once).
pub const MAX_IDS: usize = service_runtime::http::MAX_PAGE;

/// The notifications a change is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every one of the receiver's.
    All,
    /// Those with these ids (ids that are not the receiver's match nothing); never empty.
    Ids(Vec<String>),
}

impl Selection {
    /// The ids the store's scripts take: none means all.
    pub fn ids(&self) -> &[String] {
        match self {
            Self::All => &[],
            Self::Ids(ids) => ids,
        }
    }
}

/// At most [`MAX_IDS`] ids of at most `MAX_ID_BYTES` each.
fn checked(ids: Vec<String>) -> Result<Vec<String>, Error> {
    if ids.len() > MAX_IDS {
        return Err(Error::Invalid(format!(
            "at most {MAX_IDS} notification_ids at once ({} given)",
            ids.len()
        )));
    }
    if ids.iter().any(|id| id.len() > limits::MAX_ID_BYTES) {
        return Err(Error::Invalid(format!(
            "a notification id is longer than {} bytes",
            limits::MAX_ID_BYTES
        )));
    }
    Ok(ids)
}

/// What to mark read: the ids, or all of them when none are given (marking read loses
/// nothing).
pub fn to_mark_read(ids: Vec<String>) -> Result<Selection, Error> {
    let ids = checked(ids)?;
    Ok(if ids.is_empty() {
        Selection::All
    } else {
        Selection::Ids(ids)
    })
}

/// What to delete: the ids, or everything only when `all` says so. An empty list is refused,
/// not taken as "all": one client bug must not wipe an inbox.
pub fn to_delete(ids: Vec<String>, all: bool) -> Result<Selection, Error> {
    let ids = checked(ids)?;
    match (ids.is_empty(), all) {
        (false, false) => Ok(Selection::Ids(ids)),
        (true, true) => Ok(Selection::All),
        (true, false) => Err(Error::Invalid(
            "no notification_ids given: name the ids to delete, or set \"all\": true to delete every notification"
                .into(),
        )),
        (false, true) => Err(Error::Invalid(
            "\"all\": true deletes every notification; do not name notification_ids with it"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_needs_ids_or_all_and_never_both() {
        assert_eq!(to_delete(vec![], true).expect("all"), Selection::All);
        assert_eq!(
            to_delete(vec!["a".into()], false).expect("ids"),
            Selection::Ids(vec!["a".into()])
        );
        assert!(to_delete(vec![], false).is_err());
        assert!(to_delete(vec!["a".into()], true).is_err());
    }

    #[test]
    fn too_many_or_too_long_ids_are_refused_for_both_changes() {
        let many = vec!["a".to_owned(); MAX_IDS + 1];
        assert!(to_delete(many.clone(), false).is_err());
        assert!(to_mark_read(many).is_err());
        let long = vec!["x".repeat(limits::MAX_ID_BYTES + 1)];
        assert!(to_delete(long.clone(), false).is_err());
        assert!(to_mark_read(long).is_err());
        assert_eq!(to_mark_read(vec![]).expect("all"), Selection::All);
        assert!(to_mark_read(vec!["a".to_owned(); MAX_IDS]).is_ok());
    }
}
