use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[field(index)]
    #[encrypted]
    pub ssn: String,
}
fn main() {}
