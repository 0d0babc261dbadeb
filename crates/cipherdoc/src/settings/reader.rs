//! A TOML table reader that knows where it is.
//!
//! serde's derive would give "missing field `region`" without saying *which*
//! `region`; settings errors must name the whole dotted path and refuse
//! unknown keys (a typo in a security setting must not be silently ignored),
//! so the settings are read by hand through this small cursor.

use toml::{Table, Value};

use super::SettingsError;

/// Looks up `${VAR}` for interpolation; injectable so tests need not touch the
/// process environment.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct TableReader<'a> {
    path: String,
    table: &'a Table,
    used: Vec<&'a str>,
    env: EnvLookup<'a>,
}

impl<'a> TableReader<'a> {
    pub(crate) fn new(path: impl Into<String>, table: &'a Table, env: EnvLookup<'a>) -> Self {
        Self {
            path: path.into(),
            table,
            used: Vec::new(),
            env,
        }
    }

    pub(crate) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) -> SettingsError {
        SettingsError::invalid(self.child_path(key), problem)
    }

    /// An error about this table as a whole.
    pub(crate) fn table_error(&self, problem: impl Into<String>) -> SettingsError {
        SettingsError::invalid(self.path.clone(), problem)
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        let value = self.table.get(key)?;
        self.used.push(key);
        Some(value)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub(crate) fn opt_str(&mut self, key: &'a str) -> Result<Option<String>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => interpolate(s, self.env)
                .map(Some)
                .map_err(|problem| self.error(key, problem)),
            Some(other) => Err(self.error(
                key,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn req_str(&mut self, key: &'a str, hint: &str) -> Result<String, SettingsError> {
        self.opt_str(key)?
            .ok_or_else(|| self.error(key, format!("missing; {hint}")))
    }

    pub(crate) fn opt_bool(&mut self, key: &'a str) -> Result<Option<bool>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                key,
                format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn opt_int(&mut self, key: &'a str) -> Result<Option<i64>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(self.error(
                key,
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn opt_table(&mut self, key: &'a str) -> Result<Option<&'a Table>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(other) => {
                Err(self.error(key, format!("expected a table, found {}", other.type_str())))
            }
        }
    }

    pub(crate) fn opt_array(
        &mut self,
        key: &'a str,
    ) -> Result<Option<&'a Vec<Value>>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.error(
                key,
                format!("expected an array, found {}", other.type_str()),
            )),
        }
    }

    /// A reader for the sub-table `key`.
    pub(crate) fn sub(&self, key: &str, table: &'a Table) -> TableReader<'a> {
        TableReader::new(self.child_path(key), table, self.env)
    }

    /// Fails on the first key that no `opt_*`/`req_*` call asked for.
    pub(crate) fn finish(&self, known: &[&str]) -> Result<(), SettingsError> {
        for key in self.table.keys() {
            if !self.used.iter().any(|u| u == key) {
                let hint = match closest(key, known) {
                    Some(k) => format!("unknown setting; did you mean `{k}`?"),
                    None if known.is_empty() => "unknown setting".to_owned(),
                    None => format!("unknown setting; expected one of: {}", known.join(", ")),
                };
                return Err(self.error(key, hint));
            }
        }
        Ok(())
    }
}

/// Replaces `${VAR}` with the variable's value; `$${` stands for a literal `${`.
pub(crate) fn interpolate(s: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                "unterminated `${`; write `${VAR}` or `$${` for a literal".to_owned()
            })?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference; use letters, digits and `_`"
                ));
            }
            let value = env(name).ok_or_else(|| {
                format!("environment variable {name} is not set; export it or remove `${{{name}}}`")
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/x".to_owned())
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolate("${HOME_DIR}/a", &env).unwrap(), "/home/x/a");
        assert_eq!(interpolate("$${HOME_DIR}", &env).unwrap(), "${HOME_DIR}");
        assert_eq!(interpolate("cost $5", &env).unwrap(), "cost $5");
        assert!(
            interpolate("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING is not set")
        );
        assert!(
            interpolate("${OPEN", &env)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            interpolate("${a-b}", &env)
                .unwrap_err()
                .contains("not a valid")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("enigne", &["engine", "path", "name"]),
            Some("engine")
        );
        assert_eq!(closest("zzzzzz", &["engine", "path"]), None);
    }
}
