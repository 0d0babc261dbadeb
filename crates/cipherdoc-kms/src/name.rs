//! Provider kinds and (named) provider names: `aws`, `aws:prod`, `local:backup`.

use std::fmt;
use std::str::FromStr;

use crate::KmsError;

/// The kind of a KMS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProviderKind {
    /// AWS KMS.
    Aws,
    /// Azure Key Vault.
    Azure,
    /// Google Cloud KMS.
    Gcp,
    /// A KMIP server.
    Kmip,
    /// A local 96-byte key-encryption key.
    Local,
}

impl ProviderKind {
    /// The name used in `masterKey.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Azure => "azure",
            Self::Gcp => "gcp",
            Self::Kmip => "kmip",
            Self::Local => "local",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "aws" => Self::Aws,
            "azure" => Self::Azure,
            "gcp" => Self::Gcp,
            "kmip" => Self::Kmip,
            "local" => Self::Local,
            _ => return None,
        })
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name: a kind with an optional name (`aws`, `aws:prod`).
///
/// Names follow the MongoDB rule for named KMS providers: after the colon,
/// one or more of `[a-zA-Z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName {
    kind: ProviderKind,
    name: Option<String>,
}

impl ProviderName {
    /// An unnamed provider of `kind` (`"aws"`).
    pub fn new(kind: ProviderKind) -> Self {
        Self { kind, name: None }
    }

    /// A named provider (`"aws:prod"`); the name is validated.
    pub fn named(kind: ProviderKind, name: &str) -> Result<Self, KmsError> {
        validate_name(&format!("{}:{name}", kind.as_str()), name)?;
        Ok(Self {
            kind,
            name: Some(name.to_owned()),
        })
    }

    /// The kind.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The part after the colon, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

fn validate_name(full: &str, name: &str) -> Result<(), KmsError> {
    if name.is_empty() {
        return Err(KmsError::InvalidProviderName {
            name: full.to_owned(),
            reason: "the name after ':' is empty",
        });
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(KmsError::InvalidProviderName {
            name: full.to_owned(),
            reason: "the name after ':' may contain only ASCII letters, digits and '_'",
        });
    }
    Ok(())
}

impl FromStr for ProviderName {
    type Err = KmsError;

    fn from_str(s: &str) -> Result<Self, KmsError> {
        let (kind_str, name) = match s.split_once(':') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let kind = ProviderKind::parse(kind_str).ok_or_else(|| KmsError::InvalidProviderName {
            name: s.to_owned(),
            reason: "the kind must be one of aws, azure, gcp, kmip, local",
        })?;
        match name {
            None => Ok(Self::new(kind)),
            Some(n) => {
                validate_name(s, n)?;
                Ok(Self {
                    kind,
                    name: Some(n.to_owned()),
                })
            }
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}:{n}", self.kind),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "aws",
            "aws:prod",
            "local:backup",
            "kmip:a_1",
            "gcp",
            "azure:X9",
        ] {
            let n: ProviderName = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        let n: ProviderName = "aws:prod".parse().unwrap();
        assert_eq!(n.kind(), ProviderKind::Aws);
        assert_eq!(n.name(), Some("prod"));
    }

    #[test]
    fn rejects_bad_names() {
        for s in [
            "",
            "aws:",
            "aws:pro-d",
            "foo",
            "foo:bar",
            "AWS",
            "aws:a:b",
            "local: x",
        ] {
            assert!(
                matches!(
                    s.parse::<ProviderName>(),
                    Err(KmsError::InvalidProviderName { .. })
                ),
                "{s}"
            );
        }
        assert!(ProviderName::named(ProviderKind::Aws, "").is_err());
    }
}
