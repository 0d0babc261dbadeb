//! [`AppBuilder`]: settings, models and routers first, then one `open`
//! that validates all of them before any database is touched.

use std::path::Path;

use super::{App, no_such_database};
use crate::Result;
use crate::model::{Model, ModelSchema};
use crate::settings::{ModelRef, Router, Routers, Settings};

/// Builds an [`App`] from settings, models and routers, and checks them as
/// a whole at [`open`](AppBuilder::open):
///
/// - every model passes the rules the derive could not see (those of
///   [`App::register`]);
/// - every router sends every model, for reads and for writes, to a
///   database the settings configure;
///
/// and only then opens the databases, so a mistake is reported before any
/// file or connection is made.
///
/// ```no_run
/// # async fn run() -> cipherdoc::Result<()> {
/// # #[derive(cipherdoc::Model)]
/// # #[model(app = "myapp")]
/// # pub struct Patient { pub id: cipherdoc::bson::oid::ObjectId, pub name: String }
/// let settings = cipherdoc::settings::Settings::from_file("cipherdoc.toml".as_ref())?;
/// let app = cipherdoc::App::builder(settings).model::<Patient>().open().await?;
/// # Ok(()) }
/// ```
#[must_use = "an AppBuilder does nothing until `open`"]
pub struct AppBuilder {
    settings: Settings,
    models: Vec<&'static ModelSchema>,
    routers: Routers,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field(
                "databases",
                &self
                    .settings
                    .databases
                    .iter()
                    .map(|d| d.alias.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "models",
                &self.models.iter().map(|m| m.label()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    pub(super) fn new(settings: Settings) -> Self {
        Self {
            settings,
            models: Vec::new(),
            routers: Routers::default(),
        }
    }

    /// Reads the settings from `path`, or from `cipherdoc.toml` (or
    /// `CIPHERDOC_SETTINGS`) when `path` is `None`.
    ///
    /// # Errors
    /// The settings file cannot be read or is invalid.
    pub fn from_settings_file(path: Option<&Path>) -> Result<Self> {
        let settings = match path {
            Some(p) => Settings::from_file(p)?,
            None => Settings::load()?,
        };
        Ok(Self::new(settings))
    }

    /// Adds a model; it is validated at [`open`](Self::open).
    pub fn model<M: Model>(mut self) -> Self {
        let schema = M::schema();
        if !self.models.iter().any(|m| std::ptr::eq(*m, schema)) {
            self.models.push(schema);
        }
        self
    }

    /// Adds a router in code. Routers added here are asked in the order
    /// they were added, before those of the settings file.
    pub fn router(mut self, router: impl Router + 'static) -> Self {
        self.routers.push(router);
        self
    }

    /// Validates the models and the routing, then opens every database.
    ///
    /// # Errors
    /// A model breaks a rule ([`crate::model::ModelError`]), a router sends
    /// a model to a database the settings do not configure, or a database
    /// cannot be opened.
    pub async fn open(self) -> Result<App> {
        let Self {
            mut settings,
            models,
            mut routers,
        } = self;
        for r in std::mem::take(&mut settings.routers).into_boxed() {
            routers.push_boxed(r);
        }
        for schema in &models {
            schema.validate()?;
        }
        let configured = || settings.databases.iter().map(|d| d.alias.as_str());
        for schema in &models {
            let model = ModelRef {
                app: &schema.app,
                model: &schema.name,
            };
            for alias in [routers.db_for_write(model), routers.db_for_read(model)] {
                if !configured().any(|a| a == alias) {
                    return Err(no_such_database(&alias, configured()));
                }
            }
        }
        settings.routers = routers;
        let mut app = App::open(settings).await?;
        app.models = models;
        Ok(app)
    }
}
