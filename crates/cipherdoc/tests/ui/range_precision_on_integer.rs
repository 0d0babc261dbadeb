use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = 0, max = 150, precision = 2)]
    pub age: i32,
}
fn main() {}
