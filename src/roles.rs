//! Who may do what in a session: the whole rule set, pure and unit-tested.
//! Storage enforces these rules inside its statements by asking this module
//! which caller roles qualify.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Editor,
    /// A participant added without a role may only read.
    #[default]
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Editor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    /// The role spelled `value` (as `as_str` spells it).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// Something a participant may try to do in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Change `status` or `metadata`.
    Update,
    AppendMessages,
    Delete,
    /// Add a participant with the given role.
    AddParticipant(Role),
    /// Change another participant's role.
    ChangeRole,
    /// Remove another participant (anyone may remove themself).
    RemoveParticipant,
    /// Read the session's audit trail.
    ReadAuditTrail,
}

/// The whole rule set. Owners may do everything; editors may read, write
/// content and add editors or viewers; viewers may only read. Only owners
/// read the session's audit trail.
pub fn permits(caller: Role, action: Action) -> bool {
    use Action::*;
    match caller {
        Role::Owner => true,
        Role::Editor => matches!(
            action,
            Read | Update | AppendMessages | AddParticipant(Role::Editor | Role::Viewer)
        ),
        Role::Viewer => action == Read,
    }
}

/// The caller roles that may perform `action`, for use inside SQL.
pub fn roles_permitted(action: Action) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|caller| permits(*caller, action))
        .map(Role::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn the_whole_matrix() {
        use Action::*;
        let actions = [
            Read,
            Update,
            AppendMessages,
            Delete,
            AddParticipant(Owner),
            AddParticipant(Editor),
            AddParticipant(Viewer),
            ChangeRole,
            RemoveParticipant,
            ReadAuditTrail,
        ];
        // Rows: owner, editor, viewer; columns as in `actions`.
        let expected = [
            [true, true, true, true, true, true, true, true, true, true],
            [
                true, true, true, false, false, true, true, false, false, false,
            ],
            [
                true, false, false, false, false, false, false, false, false, false,
            ],
        ];
        for (caller, row) in Role::ALL.into_iter().zip(expected) {
            for (action, allowed) in actions.into_iter().zip(row) {
                assert_eq!(permits(caller, action), allowed, "{caller:?} {action:?}");
            }
        }
    }

    #[test]
    fn permitted_roles_follow_the_matrix() {
        assert_eq!(roles_permitted(Action::AddParticipant(Owner)), ["owner"]);
        assert_eq!(
            roles_permitted(Action::AddParticipant(Viewer)),
            ["owner", "editor"]
        );
        assert_eq!(roles_permitted(Action::Delete), ["owner"]);
        assert_eq!(roles_permitted(Action::Read), ["owner", "editor", "viewer"]);
    }

    #[test]
    fn roles_round_trip_through_their_spelling() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
