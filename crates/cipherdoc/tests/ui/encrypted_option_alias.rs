use bson::oid::ObjectId;
use cipherdoc::Model;

type MaybeSsn = Option<String>;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted]
    pub ssn: MaybeSsn,
}
fn main() {}
