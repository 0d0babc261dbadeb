use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = 0.5, max = 150)]
    pub age: i32,
}
fn main() {}
