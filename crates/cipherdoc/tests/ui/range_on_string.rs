use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = String::new(), max = String::from("z"))]
    pub name: String,
}
fn main() {}
