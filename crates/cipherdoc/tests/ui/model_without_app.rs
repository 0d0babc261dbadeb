use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
pub struct Patient {
    pub id: ObjectId,
}
fn main() {}
