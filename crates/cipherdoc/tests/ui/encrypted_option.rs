use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted]
    pub ssn: Option<String>,
}
fn main() {}
