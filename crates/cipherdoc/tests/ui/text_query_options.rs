use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Contact {
    pub id: ObjectId,
    #[encrypted(queries = "prefix, substring", min_query_length = 2, max_query_length = 8)]
    pub a: String,
}

#[derive(Model)]
#[model(app = "ui")]
pub struct Contact2 {
    pub id: ObjectId,
    #[encrypted(queries = "substring", min_query_length = 2, max_query_length = 8)]
    pub b: String,
}

#[derive(Model)]
#[model(app = "ui")]
pub struct Contact3 {
    pub id: ObjectId,
    #[encrypted(queries = "equality", min_query_length = 2)]
    pub c: String,
}

#[derive(Model)]
#[model(app = "ui")]
pub struct Contact4 {
    pub id: ObjectId,
    #[encrypted(queries = "prefix", min_query_length = 5, max_query_length = 2)]
    pub d: String,
}

fn main() {}
