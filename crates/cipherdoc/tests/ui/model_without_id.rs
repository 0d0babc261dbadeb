use cipherdoc::Model;

#[derive(Model)]
#[model(app = "ui")]
pub struct Patient {
    pub name: String,
}
fn main() {}
