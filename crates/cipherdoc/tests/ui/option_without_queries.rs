use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(contention = 4)]
    pub ssn: String,
}
fn main() {}
