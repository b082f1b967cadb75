//! The `data` of each event of a stream (documented in the OpenAPI
//! document): the same objects the other functions return.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::messages::StoredMessage;
use crate::db::participants::Participant;
use crate::db::sessions::{Session, SessionView};
use crate::roles::Role;

/// A session as get-session returns it, with the subscriber's role.
#[derive(Serialize)]
pub struct SessionWithRole<'a> {
    #[serde(flatten)]
    pub session: &'a Session,
    pub role: Role,
}

/// `snapshot`, the first event of every stream: the session and its
/// participants as they are when the stream opens.
#[derive(Serialize, ToSchema)]
pub struct Snapshot<'a> {
    /// As get-session returns it.
    #[schema(value_type = SessionView)]
    pub session: SessionWithRole<'a>,
    /// As list-participants returns them.
    #[schema(value_type = Vec<Participant>)]
    pub participants: &'a [Participant],
}

/// `participants`: someone was added, changed role or was removed; every
/// participant now, as list-participants returns them.
#[derive(Serialize, ToSchema)]
pub struct ParticipantsChanged<'a> {
    pub session_id: Uuid,
    #[schema(value_type = Vec<Participant>)]
    pub participants: &'a [Participant],
}

/// `end`, the last event of every stream that ends by itself.
#[derive(Serialize, ToSchema)]
pub struct StreamEnd {
    pub reason: EndReason,
}

/// Why a stream ended. After `max_duration` and `shutdown`, reconnect with
/// `Last-Event-ID` (or `after_seq`) to go on; after the others, the stream
/// would be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller is no longer a participant.
    Removed,
    /// The session was deleted: moved to the trash, or deleted for good.
    Deleted,
    /// The application's key was rotated, or the application deactivated
    /// or deleted.
    KeyRevoked,
    /// The stream reached `EVENTS_MAX_STREAM_SECONDS`.
    MaxDuration,
    /// The instance is shutting down.
    Shutdown,
}

impl EndReason {
    /// Whether the client should reconnect.
    pub fn resumable(self) -> bool {
        matches!(self, EndReason::MaxDuration | EndReason::Shutdown)
    }
}

/// One event of a stream as `text/event-stream` carries it (the item a
/// client's SSE parser yields): its name, a `message`'s `seq` as its id,
/// and its data, an `EventData` object as JSON text.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// `snapshot`, `message`, `session`, `participants` or `end`.
    event: String,
    /// A `message`'s `seq`; what `Last-Event-ID` sends back.
    id: Option<String>,
    #[schema(schema_with = event_data_json)]
    data: String,
    /// Milliseconds to wait before reconnecting (before an `end` that
    /// invites it).
    retry: Option<u64>,
}

/// `data`: a string whose content is an [`EventData`] object as JSON.
fn event_data_json() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("JSON: the `EventData` object of the event's name."))
        .content_media_type("application/json")
        .content_schema(Some(utoipa::openapi::Ref::from_schema_name("EventData")))
        .build()
}

/// The `data` of the events of a stream, one JSON object on each `data:`
/// line, by the event's name (for the OpenAPI document: a stream's body is
/// `text/event-stream`, not JSON).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EventData<'a> {
    /// `snapshot`
    #[schema(title = "snapshot")]
    Snapshot(Snapshot<'a>),
    /// `message` (its `id` is its `seq`)
    #[schema(title = "message")]
    Message(StoredMessage),
    /// `session`
    #[schema(title = "session")]
    Session(SessionView),
    /// `participants`
    #[schema(title = "participants")]
    Participants(ParticipantsChanged<'a>),
    /// `end`
    #[schema(title = "end")]
    End(StreamEnd),
}
