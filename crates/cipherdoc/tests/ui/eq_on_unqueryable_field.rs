use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    pub name: String,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "range", min = 0, max = 150)]
    pub age: i32,
    #[encrypted]
    pub notes: String,
}

fn main() {
    let _ = Patient::fields().notes.eq("x");
}
