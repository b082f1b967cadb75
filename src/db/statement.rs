//! A statement whose conditions depend on the filters a request gives:
//! one text per combination (each cached), never a catch-all condition
//! such as `($4 IS NULL OR s.status = $4)`, whose generic plan cannot know
//! which side holds (see `participants::sessions_of_user`).

use tokio_postgres::types::ToSql;

/// A statement's text and parameters, grown together so that each
/// condition names the parameters it adds.
pub(super) struct Statement<'a> {
    pub sql: String,
    pub params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Statement<'a> {
    /// Appends `AND condition`, where `{0}`, `{1}`, ... stand for `values`.
    pub fn and(&mut self, condition: &str, values: &[&'a (dyn ToSql + Sync)]) {
        let mut condition = condition.to_owned();
        for (i, value) in values.iter().enumerate() {
            self.params.push(*value);
            condition = condition.replace(&format!("{{{i}}}"), &format!("${}", self.params.len()));
        }
        self.sql += "\n               AND ";
        self.sql += &condition;
    }
}
