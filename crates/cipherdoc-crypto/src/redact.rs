//! `Debug` without values: a value that may be the plaintext of an
//! encrypted field (a query constant, a placeholder's value) prints as its
//! BSON type, so that logging a query or a payload never logs the secret.

use bson::Bson;

/// Prints `<redacted string>` (the BSON type) in place of a value.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(pub &'a Bson);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {:?}>", self.0.element_type())
    }
}

/// The same for a list of values (`$in`).
#[derive(Clone, Copy)]
pub struct RedactedList<'a>(pub &'a [Bson]);

impl std::fmt::Debug for RedactedList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(Redacted)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_type_only() {
        let v = Bson::String("SECRET-123".into());
        assert_eq!(format!("{:?}", Redacted(&v)), "<redacted String>");
        let l = [v, Bson::Int64(987_654)];
        let s = format!("{:?}", RedactedList(&l));
        assert!(!s.contains("SECRET") && !s.contains("987"), "{s}");
    }
}
