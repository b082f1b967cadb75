//! Who may do what in a session: the whole rule set, pure and unit-tested.
//! Storage enforces these rules inside its statements by asking this module
//! which caller roles qualify.

use serde::{Deserialize, Serialize};

use crate::db::DbError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

    /// Reads the `role` column; the CHECK constraint makes failure a data fault.
    pub fn from_db(value: &str) -> Result<Self, DbError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == value)
            .ok_or_else(|| DbError::Other(format!("unknown role {value:?} in the database")))
    }
}

/// May a participant with `caller` role add someone as `granted`?
/// Owners grant any role; editors grant editor or viewer; viewers grant none.
pub fn may_add_participant(caller: Role, granted: Role) -> bool {
    match caller {
        Role::Owner => true,
        Role::Editor => granted != Role::Owner,
        Role::Viewer => false,
    }
}

/// The caller roles allowed to add a participant as `granted`.
pub fn roles_that_may_add(granted: Role) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|caller| may_add_participant(*caller, granted))
        .map(Role::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn add_participant_matrix() {
        let expected = [
            (Owner, Owner, true),
            (Owner, Editor, true),
            (Owner, Viewer, true),
            (Editor, Owner, false),
            (Editor, Editor, true),
            (Editor, Viewer, true),
            (Viewer, Owner, false),
            (Viewer, Editor, false),
            (Viewer, Viewer, false),
        ];
        for (caller, granted, allowed) in expected {
            assert_eq!(
                may_add_participant(caller, granted),
                allowed,
                "{caller:?} adds {granted:?}"
            );
        }
    }

    #[test]
    fn qualifying_roles_follow_the_matrix() {
        assert_eq!(roles_that_may_add(Owner), ["owner"]);
        assert_eq!(roles_that_may_add(Editor), ["owner", "editor"]);
        assert_eq!(roles_that_may_add(Viewer), ["owner", "editor"]);
    }

    #[test]
    fn roles_round_trip_through_the_database_spelling() {
        for role in Role::ALL {
            assert_eq!(Role::from_db(role.as_str()).unwrap(), role);
        }
        assert!(Role::from_db("admin").is_err());
    }
}
