use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "equality", sparsity = 2)]
    pub ssn: String,
}
fn main() {}
