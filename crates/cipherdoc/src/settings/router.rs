//! Routers decide which database a model is read from, written to and
//! migrated on, as Django's `DATABASE_ROUTERS` do.

use std::fmt;

/// The model a routing decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef<'a> {
    /// The model's application label, e.g. `myapp`.
    pub app: &'a str,
    /// The model's name, e.g. `Patient`.
    pub model: &'a str,
}

/// A router. Each method returns `None` for "no opinion": the next router is
/// asked, and when none has one the `default` database is used (and migrations
/// are allowed only there).
pub trait Router: Send + Sync + fmt::Debug {
    /// The database to read `model` from.
    fn db_for_read(&self, model: ModelRef<'_>) -> Option<String>;
    /// The database to write `model` to.
    fn db_for_write(&self, model: ModelRef<'_>) -> Option<String>;
    /// Whether migrations of `app` (and `model`, when about one model) may run
    /// on database `db`.
    fn allow_migrate(&self, db: &str, app: &str, model: Option<&str>) -> Option<bool>;
}

/// A router from the settings file: `[[routers]] app = "myapp", database = "encrypted"`.
///
/// It sends the app's models (or only those listed in `models`) to `database`
/// for reads, writes and migrations, and, like the reference's
/// `EncryptedRouter`, keeps every other app's collections out of that database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRouter {
    /// The application label this rule is about.
    pub app: String,
    /// Only these models of the app (all when empty).
    pub models: Vec<String>,
    /// The database the models live in.
    pub database: String,
}

impl RuleRouter {
    fn covers(&self, app: &str, model: Option<&str>) -> bool {
        self.app == app
            && (self.models.is_empty() || model.is_some_and(|m| self.models.iter().any(|x| x == m)))
    }
}

impl Router for RuleRouter {
    fn db_for_read(&self, model: ModelRef<'_>) -> Option<String> {
        self.covers(model.app, Some(model.model))
            .then(|| self.database.clone())
    }

    fn db_for_write(&self, model: ModelRef<'_>) -> Option<String> {
        self.db_for_read(model)
    }

    fn allow_migrate(&self, db: &str, app: &str, model: Option<&str>) -> Option<bool> {
        if self.covers(app, model) {
            Some(db == self.database)
        } else if db == self.database {
            Some(false)
        } else {
            None
        }
    }
}

/// The routers of an application, asked in order.
#[derive(Debug, Default)]
pub struct Routers {
    routers: Vec<Box<dyn Router>>,
}

/// The database every model uses when no router has an opinion.
pub const DEFAULT_DB: &str = "default";

impl Routers {
    /// Appends a router; earlier routers are asked first.
    pub fn push(&mut self, router: impl Router + 'static) {
        self.routers.push(Box::new(router));
    }

    /// Appends a boxed router.
    pub fn push_boxed(&mut self, router: Box<dyn Router>) {
        self.routers.push(router);
    }

    /// The routers, in order (to rebuild a chain).
    pub fn into_boxed(self) -> Vec<Box<dyn Router>> {
        self.routers
    }

    /// The database to read `model` from.
    pub fn db_for_read(&self, model: ModelRef<'_>) -> String {
        self.routers
            .iter()
            .find_map(|r| r.db_for_read(model))
            .unwrap_or_else(|| DEFAULT_DB.to_owned())
    }

    /// The database to write `model` to.
    pub fn db_for_write(&self, model: ModelRef<'_>) -> String {
        self.routers
            .iter()
            .find_map(|r| r.db_for_write(model))
            .unwrap_or_else(|| DEFAULT_DB.to_owned())
    }

    /// Whether migrations of `app`/`model` may run on `db`.
    pub fn allow_migrate(&self, db: &str, app: &str, model: Option<&str>) -> bool {
        self.routers
            .iter()
            .find_map(|r| r.allow_migrate(db, app, model))
            .unwrap_or(db == DEFAULT_DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> ModelRef<'static> {
        ModelRef {
            app: "myapp",
            model: "Patient",
        }
    }

    #[test]
    fn rule_router_matches_the_reference_encrypted_router() {
        let mut routers = Routers::default();
        routers.push(RuleRouter {
            app: "myapp".into(),
            models: vec![],
            database: "encrypted".into(),
        });
        assert_eq!(routers.db_for_read(patient()), "encrypted");
        assert_eq!(routers.db_for_write(patient()), "encrypted");
        let other = ModelRef {
            app: "auth",
            model: "User",
        };
        assert_eq!(routers.db_for_write(other), "default");
        assert!(routers.allow_migrate("encrypted", "myapp", Some("Patient")));
        assert!(!routers.allow_migrate("default", "myapp", Some("Patient")));
        assert!(!routers.allow_migrate("encrypted", "auth", None));
        assert!(routers.allow_migrate("default", "auth", None));
    }

    #[test]
    fn model_lists_narrow_a_rule() {
        let rule = RuleRouter {
            app: "myapp".into(),
            models: vec!["Patient".into()],
            database: "encrypted".into(),
        };
        assert_eq!(rule.db_for_read(patient()), Some("encrypted".into()));
        assert_eq!(
            rule.db_for_read(ModelRef {
                app: "myapp",
                model: "Visit"
            }),
            None
        );
    }
}
