use bson::oid::ObjectId;
use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Contact {
    pub id: ObjectId,
    #[encrypted(queries = "prefix, suffix", min_query_length = 2, max_query_length = 8)]
    pub surname: String,
    #[encrypted(queries = "substring", max_length = 30, min_query_length = 3, max_query_length = 6)]
    pub email: String,
    #[encrypted(queries = "prefix", min_query_length = 1, max_query_length = 4)]
    pub city: String,
}

fn main() {
    let _ = Contact::fields().city.ends_with("abc");
}
