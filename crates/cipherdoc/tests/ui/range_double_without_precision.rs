use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = 0.0, max = 500.0)]
    pub weight: f64,
}
fn main() {}
