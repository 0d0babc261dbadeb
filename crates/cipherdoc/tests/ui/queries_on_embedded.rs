use bson::oid::ObjectId;
use cipherdoc::{EmbeddedModel, Model};

#[derive(EmbeddedModel)]
pub struct Billing {
    pub cc_number: String,
}

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub billing: Billing,
}
fn main() {}
