use bson::oid::ObjectId;
use cipherdoc::{EmbeddedModel, Model};

#[derive(EmbeddedModel)]
pub struct Visit {
    pub reason: String,
}

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub visits: Vec<Visit>,
}
fn main() {}
