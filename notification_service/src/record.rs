//! The one notification record: what `notifications:{email}` holds, what the frontend outbox
//! carries, and what every reply is made from (the protobuf messages through `From`, the
//! REST list through [`StoredNotification::listed`]).
//!
//! Entries are read as tolerantly as they were when they were picked apart as JSON: any JSON
//! object is a record. A key that is missing, or holds a value of another type than this port
//! writes, leaves its field `None` (the protobuf field is then unset), and such a value and
//! every unknown key are kept in [`StoredNotification::extra`], so `/list_notifications` still
//! shows each entry exactly as stored. Only an entry that is not a JSON object is corrupt.

use std::collections::BTreeMap;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    ser::{SerializeMap, SerializeSeq},
};
use serde_json::{Map, Value};
use service_runtime::error::StoreError;

/// A notification as stored in `notifications:{email}` and pushed to frontend-service.
//
// Serialized (stored, queued) as `{"sender_email", "receiver_email", "timestamp", "read",
// "notification_id", "cursor"}` in that order, each only when set, then `extra`. The store's
// scripts rewrite entries with `cjson`, which may order keys otherwise: reading does not depend
// on the order. The first four are set in every notification this port or the original system
// wrote (the schema says so); `None` only in an entry written otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default, utoipa::ToSchema)]
pub struct StoredNotification {
    #[schema(value_type = String)]
    pub sender_email: Option<String>,
    #[schema(value_type = String)]
    pub receiver_email: Option<String>,
    #[schema(value_type = String)]
    pub timestamp: Option<String>,
    #[schema(value_type = bool)]
    pub read: Option<bool>,
    /// Absent in notifications written before ids existed.
    pub notification_id: Option<String>,
    /// The receiver's sequence number; absent before it is stored (and in older entries).
    pub cursor: Option<u64>,
    /// Keys stored by someone else, and known keys whose value has another type than the field:
    /// kept as stored, shown by `/list_notifications`, not sent over gRPC.
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl StoredNotification {
    /// A stored entry: any JSON object (see the module's documentation).
    pub fn parse(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json)
            .map_err(|_| StoreError::Corrupt(format!("notification {json:?}")))
    }

    /// As `/list_notifications` shows it: every stored key in alphabetical order (the order
    /// of the JSON object the reply was made of before the record was typed).
    pub fn listed(&self) -> impl Serialize + '_ {
        Listed(self)
    }

    /// Serializes a list of records as `/list_notifications` shows them (see [`Self::listed`]).
    pub fn serialize_listed<S: Serializer>(
        list: &[Self],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for notification in list {
            seq.serialize_element(&notification.listed())?;
        }
        seq.end()
    }

    /// The record of a stored JSON object: each known key with a value of the field's type
    /// goes to its field, everything else stays in `extra`.
    fn from_object(mut object: Map<String, Value>) -> Self {
        let mut text = |key: &str| match object.remove(key) {
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                object.insert(key.to_owned(), other);
                None
            }
            None => None,
        };
        let sender_email = text("sender_email");
        let receiver_email = text("receiver_email");
        let timestamp = text("timestamp");
        let notification_id = text("notification_id");
        let read = match object.get("read") {
            Some(&Value::Bool(read)) => {
                object.remove("read");
                Some(read)
            }
            _ => None,
        };
        let cursor = match object.get("cursor").and_then(Value::as_u64) {
            Some(cursor) => {
                object.remove("cursor");
                Some(cursor)
            }
            None => None,
        };
        Self {
            sender_email,
            receiver_email,
            timestamp,
            read,
            notification_id,
            cursor,
            extra: object,
        }
    }

    /// The set fields by key, in the order they are written.
    fn fields(&self) -> impl Iterator<Item = (&'static str, Field<'_>)> {
        fn text<'a>(
            key: &'static str,
            value: &'a Option<String>,
        ) -> Option<(&'static str, Field<'a>)> {
            value.as_deref().map(|text| (key, Field::Text(text)))
        }
        [
            text("sender_email", &self.sender_email),
            text("receiver_email", &self.receiver_email),
            text("timestamp", &self.timestamp),
            self.read.map(|read| ("read", Field::Bool(read))),
            text("notification_id", &self.notification_id),
            self.cursor.map(|cursor| ("cursor", Field::Number(cursor))),
        ]
        .into_iter()
        .flatten()
    }
}

/// One value of a record, borrowed for serializing.
enum Field<'a> {
    Text(&'a str),
    Bool(bool),
    Number(u64),
    Stored(&'a Value),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(text) => serializer.serialize_str(text),
            Self::Bool(flag) => serializer.serialize_bool(*flag),
            Self::Number(number) => serializer.serialize_u64(*number),
            Self::Stored(value) => value.serialize(serializer),
        }
    }
}

impl Serialize for StoredNotification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.fields() {
            map.serialize_entry(key, &value)?;
        }
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StoredNotification {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from_object)
    }
}

/// See [`StoredNotification::listed`].
struct Listed<'a>(&'a StoredNotification);

impl Serialize for Listed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: BTreeMap<&str, Field<'_>> = self.0.fields().collect();
        for (key, value) in &self.0.extra {
            sorted.insert(key, Field::Stored(value));
        }
        sorted.serialize(serializer)
    }
}

impl From<StoredNotification> for proto::notification_service::Notification {
    fn from(stored: StoredNotification) -> Self {
        Self {
            sender_email: stored.sender_email,
            receiver_email: stored.receiver_email,
            timestamp: stored.timestamp,
            read: stored.read,
            notification_id: stored.notification_id,
            cursor: stored.cursor,
        }
    }
}

/// The push to frontend-service: the same fields (see `proto_definitions` for the mapping).
impl From<StoredNotification> for proto::frontend_service::Notification {
    fn from(stored: StoredNotification) -> Self {
        proto::notification_service::Notification::from(stored).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an entry was shown as before the record was typed: the JSON object as parsed.
    fn as_before(json: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<Value>(json).expect("JSON")).expect("encodes")
    }

    fn listed(json: &str) -> String {
        serde_json::to_string(&StoredNotification::parse(json).expect("a record").listed())
            .expect("encodes")
    }

    fn written() -> StoredNotification {
        StoredNotification {
            sender_email: Some("alice@example.com".into()),
            receiver_email: Some("bob@example.com".into()),
            timestamp: Some("2026-11-22T08:50:18.731521Z".into()),
            read: Some(false),
            notification_id: Some("n-1".into()),
            cursor: None,
            extra: Map::new(),
        }
    }

    #[test]
    fn a_new_notification_is_written_as_before() {
        assert_eq!(
            serde_json::to_string(&written()).expect("encodes"),
            r#"{"sender_email":"alice@example.com","receiver_email":"bob@example.com","timestamp":"2026-11-22T08:50:18.731521Z","read":false,"notification_id":"n-1"}"#
        );
        let stored = StoredNotification {
            cursor: Some(1_795_441_246_954),
            ..written()
        };
        assert_eq!(
            serde_json::to_string(&stored).expect("encodes"),
            r#"{"sender_email":"alice@example.com","receiver_email":"bob@example.com","timestamp":"2026-11-22T08:50:18.731521Z","read":false,"notification_id":"n-1","cursor":1795441246954}"#
        );
    }

    #[test]
    fn entries_in_any_key_order_are_read_and_listed_as_before() {
        // As cjson rewrites an entry (mark read), and as the original system wrote one.
        let reordered = r#"{"read":true,"cursor":1795441246954,"timestamp":"2026-11-22T08:50:18.731521Z","notification_id":"n-1","receiver_email":"bob@example.com","sender_email":"alice@example.com"}"#;
        let original = r#"{"sender_email": "alice@example.com", "receiver_email": "bob@example.com", "timestamp": "2025-01-14T12:00:00Z", "read": false}"#;
        let read = StoredNotification::parse(reordered).expect("a record");
        assert_eq!(
            read,
            StoredNotification {
                read: Some(true),
                cursor: Some(1_795_441_246_954),
                ..written()
            }
        );
        let old = StoredNotification::parse(original).expect("a record");
        assert_eq!((old.notification_id, old.cursor), (None, None));
        for json in [reordered, original] {
            assert_eq!(listed(json), as_before(json));
        }
    }

    #[test]
    fn unknown_keys_and_values_of_other_types_are_kept_and_listed_but_not_sent() {
        let json = r#"{"sender_email":"alice@example.com","read":"yes","cursor":-3,"zeta":[1],"notification_id":null,"channel":"mail"}"#;
        let stored = StoredNotification::parse(json).expect("a record");
        assert_eq!(stored.read, None);
        assert_eq!(stored.cursor, None);
        assert_eq!(stored.notification_id, None);
        assert_eq!(stored.extra.len(), 5);
        assert_eq!(listed(json), as_before(json));
        let message = proto::notification_service::Notification::from(stored.clone());
        assert_eq!(
            message,
            proto::notification_service::Notification {
                sender_email: Some("alice@example.com".into()),
                ..Default::default()
            }
        );
        let pushed = proto::frontend_service::Notification::from(stored);
        assert_eq!(pushed.sender_email.as_deref(), Some("alice@example.com"));
        assert_eq!(pushed.read, None);
    }

    #[test]
    fn an_object_with_missing_fields_is_a_record_with_those_fields_unset() {
        let stored = StoredNotification::parse("{}").expect("a record");
        assert_eq!(stored, StoredNotification::default());
        assert_eq!(listed("{}"), "{}");
        assert_eq!(serde_json::to_string(&stored).expect("encodes"), "{}");
    }

    #[test]
    fn an_entry_that_is_not_a_json_object_is_corrupt() {
        for json in [
            "not json",
            "",
            "[1,2]",
            "\"text\"",
            "42",
            "null",
            "{\"read\":",
        ] {
            let err = StoredNotification::parse(json).expect_err("corrupt");
            assert!(
                matches!(&err, StoreError::Corrupt(message) if *message == format!("notification {json:?}")),
                "{json}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("stored data is malformed: notification {json:?}")
            );
        }
    }

    #[test]
    fn a_record_converts_to_both_messages_field_for_field() {
        let stored = StoredNotification {
            read: Some(true),
            cursor: Some(7),
            ..written()
        };
        let message = proto::notification_service::Notification::from(stored.clone());
        assert_eq!(
            message,
            proto::notification_service::Notification {
                sender_email: stored.sender_email.clone(),
                receiver_email: stored.receiver_email.clone(),
                timestamp: stored.timestamp.clone(),
                read: Some(true),
                notification_id: stored.notification_id.clone(),
                cursor: Some(7),
            }
        );
        let pushed = proto::frontend_service::Notification::from(stored);
        assert_eq!(
            pushed,
            proto::frontend_service::Notification {
                sender_email: message.sender_email,
                receiver_email: message.receiver_email,
                timestamp: message.timestamp,
                read: message.read,
                notification_id: message.notification_id,
                cursor: message.cursor,
            }
        );
    }
}
