use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub weight: f64,
    #[encrypted(queries = "equality")]
    pub balance: rust_decimal::Decimal,
}
fn main() {}
