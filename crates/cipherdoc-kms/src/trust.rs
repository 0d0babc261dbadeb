//! Which master keys a provider may use and which hosts it may talk to:
//! decided by the settings, never by the key vault.
//!
//! A key document's `masterKey` is written by whoever can write to the
//! database. Obeying it would send the provider's bearer token or a SigV4
//! signature (which can be replayed to AWS) to a host the writer chose, and
//! let the writer pick the key a data key is unwrapped with. So:
//!
//! * A `masterKey` is used only if it **equals a configured master key**
//!   (provider, key identifier and endpoint: [`KeyTrust::check`]) or the
//!   host it would make us contact is on the provider's **`allowed_hosts`**.
//!   For KMIP the `keyId` differs per data key (one secret is registered per
//!   key), so it takes part in the comparison only when the settings name
//!   one; the provider's own configured endpoint counts as allowed.
//! * Independently, every provider refuses to open a connection to a host
//!   that its settings do not name ([`HostSet`]), so that a bug in the first
//!   rule still cannot leak a credential. The check is on the URL actually
//!   sent.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Endpoint, KmsError, MasterKey, ProviderKind, ProviderName};

/// AWS KMS's public host for a region.
pub(crate) fn aws_default_host(region: &str) -> String {
    format!("kms.{region}.amazonaws.com")
}

/// Cloud KMS's public host.
pub(crate) const GCP_DEFAULT_HOST: &str = "cloudkms.googleapis.com";

/// Checks an AWS region name (`us-east-1`, `us-gov-west-1`, `cn-north-1`):
/// lowercase ASCII letters and digits in `-`-separated parts. It becomes
/// part of a host name (`kms.<region>.amazonaws.com`) and of the SigV4
/// scope, so a dot, `@`, `/` or `:` (a host suffix or a different host) is
/// refused rather than escaped.
pub fn validate_region(region: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&region.len())
        && region.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && region.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is not an AWS region name ({:?}: lowercase letters and digits separated by '-', e.g. us-east-1)",
            crate::http::clip(region)
        ))
    }
}

/// Checks a host name: an IPv4 address, a bracketed IPv6 address, or a DNS
/// name of letters, digits and `-` in dot-separated labels (RFC 1123).
pub fn validate_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(drop)
            .map_err(|_| "has an invalid IPv6 address".to_owned());
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let ok = (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "has an invalid host name {:?} (letters, digits, '-' and '.', or an IP address)",
            crate::http::clip(host)
        ))
    }
}

/// A set of `host[:port]` a provider may connect to. An entry without a port
/// admits the host on any port; host names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSet {
    entries: Vec<(String, Option<u16>)>,
}

impl HostSet {
    /// Adds `host` (with `port`, or any port when `None`).
    pub fn insert(&mut self, host: &str, port: Option<u16>) {
        let h = normalize(host);
        if !self.entries.iter().any(|(eh, ep)| *eh == h && *ep == port) {
            self.entries.push((h, port));
        }
    }

    /// Adds an endpoint.
    pub fn insert_endpoint(&mut self, e: &Endpoint) {
        self.insert(e.host(), e.port());
    }

    /// Adds the host and port of a URL (`https://h:p/...`).
    #[cfg(feature = "_http")]
    pub(crate) fn insert_url(&mut self, url: &str) {
        if let Ok(u) = url::Url::parse(url)
            && let Some(h) = u.host_str()
        {
            self.insert(h, u.port_or_known_default());
        }
    }

    /// Whether `host` on `port` is admitted.
    pub fn permits(&self, host: &str, port: Option<u16>) -> bool {
        let h = normalize(host);
        self.entries
            .iter()
            .any(|(eh, ep)| *eh == h && (ep.is_none() || *ep == port))
    }

    /// The entries, lowercased.
    #[cfg(any(feature = "_http", feature = "kmip"))]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Option<u16>)> {
        self.entries.iter().map(|(h, p)| (h.as_str(), *p))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for HostSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("(none)");
        }
        for (i, (h, p)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p {
                Some(p) => write!(f, "{h}:{p}")?,
                None => f.write_str(h)?,
            }
        }
        Ok(())
    }
}

/// Lowercase, brackets of IPv6 literals removed (URL hosts come without them).
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// What the settings allow one provider to use: the configured master keys
/// and the `allowed_hosts`. The default trusts nothing: every key document
/// is refused until the settings name its master key or its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTrust {
    master_keys: Vec<MasterKey>,
    allowed_hosts: HostSet,
}

impl KeyTrust {
    /// Trust these master keys (from `kms_credentials`) and any master key
    /// whose host is among `allowed_hosts`.
    pub fn new(master_keys: Vec<MasterKey>, allowed_hosts: &[Endpoint]) -> Self {
        let mut hosts = HostSet::default();
        for e in allowed_hosts {
            hosts.insert_endpoint(e);
        }
        Self {
            master_keys,
            allowed_hosts: hosts,
        }
    }

    /// The configured master keys.
    pub fn master_keys(&self) -> &[MasterKey] {
        &self.master_keys
    }

    /// The allowlist.
    pub fn allowed_hosts(&self) -> &HostSet {
        &self.allowed_hosts
    }

    /// The hosts the configured master keys and the allowlist make a
    /// provider contact (its settings add their own endpoints).
    #[cfg(any(feature = "_http", feature = "kmip"))]
    pub(crate) fn hosts(&self, own_endpoint: Option<&Endpoint>) -> HostSet {
        let mut set = self.allowed_hosts.clone();
        for mk in &self.master_keys {
            if let Some((h, p)) = target_host(mk, own_endpoint) {
                set.insert(&h, p);
            }
        }
        set
    }

    /// Checks a `masterKey` read from a key document (or given to wrap)
    /// before anything is sent anywhere. `own_endpoint` is the provider's
    /// configured endpoint (KMIP's server), which a key without an endpoint
    /// of its own uses and which counts as allowed.
    pub fn check(
        &self,
        provider: &ProviderName,
        mk: &MasterKey,
        own_endpoint: Option<&Endpoint>,
    ) -> Result<(), KmsError> {
        if mk.provider() != provider {
            return Err(KmsError::WrongMasterKeyKind {
                provider: provider.to_string(),
                got: mk.kind(),
            });
        }
        if mk.kind() == ProviderKind::Local || self.master_keys.iter().any(|c| same_key(c, mk)) {
            return Ok(());
        }
        let target = target_host(mk, own_endpoint);
        if let Some((h, p)) = &target {
            if self.allowed_hosts.permits(h, *p) {
                return Ok(());
            }
            if let (Some(own), MasterKey::Kmip(_)) = (own_endpoint, mk)
                && normalize(own.host()) == normalize(h)
                && own.port() == *p
            {
                return Ok(());
            }
        }
        let host = target.map(|(h, p)| match p {
            Some(p) => format!("{h}:{p}"),
            None => h,
        });
        Err(KmsError::UntrustedMasterKey {
            provider: provider.to_string(),
            reason: format!(
                "it equals no master key of the settings (kms_credentials.{provider}) and {} is not in kms_providers.{provider}.allowed_hosts ({})",
                host.as_deref().unwrap_or("its host"),
                self.allowed_hosts
            ),
            host,
        })
    }
}

/// The host (and port, when fixed) a master key makes its provider contact.
fn target_host(mk: &MasterKey, own_endpoint: Option<&Endpoint>) -> Option<(String, Option<u16>)> {
    let ep = |e: &Endpoint| Some((normalize(e.host()), e.port()));
    match mk {
        MasterKey::Aws(k) => match &k.endpoint {
            Some(e) => ep(e),
            None => Some((aws_default_host(&k.region), None)),
        },
        MasterKey::Azure(k) => ep(&k.key_vault_endpoint),
        MasterKey::Gcp(k) => match &k.endpoint {
            Some(e) => ep(e),
            None => Some((GCP_DEFAULT_HOST.to_owned(), None)),
        },
        MasterKey::Kmip(k) => k.endpoint.as_ref().or(own_endpoint).and_then(ep),
        MasterKey::Local(_) => None,
    }
}

/// Equality for trust: every field, except that a configured KMIP key
/// without `keyId` admits any `keyId` (see the module docs).
fn same_key(configured: &MasterKey, found: &MasterKey) -> bool {
    match (configured, found) {
        (MasterKey::Kmip(c), MasterKey::Kmip(f)) => {
            c.provider == f.provider
                && c.endpoint == f.endpoint
                && c.delegated == f.delegated
                && (c.key_id.is_none() || c.key_id == f.key_id)
        }
        (c, f) => c == f,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[allow(clippy::needless_pass_by_value)]
    fn mk(d: bson::Document) -> MasterKey {
        MasterKey::from_document(&d).unwrap()
    }

    #[test]
    fn regions() {
        for ok in ["us-east-1", "us-gov-west-1", "cn-north-1", "eu-central-2"] {
            validate_region(ok).unwrap();
        }
        for bad in [
            "",
            "us-east-1.evil.example",
            "a@127.0.0.1:8443/",
            "US-EAST-1",
            "us--east-1",
            "-us",
            "us-east-1-",
            "1us",
            "us_east_1",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "a.b",
            "127.0.0.1",
            "[::1]",
            "kms.us-east-1.amazonaws.com",
            "x",
        ] {
            validate_host(ok).unwrap();
        }
        for bad in [
            "", "a..b", "-a.b", "a@b", "a/b", "a b", "[zz]", "a_b", "é.com",
        ] {
            assert!(validate_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn equal_or_allowlisted_only() {
        let name: ProviderName = "azure".parse().unwrap();
        let configured =
            mk(doc! {"provider": "azure", "keyVaultEndpoint": "v.vault.azure.net", "keyName": "k"});
        let trust = KeyTrust::new(
            vec![configured.clone()],
            &[Endpoint::parse("other.vault.azure.net").unwrap()],
        );
        trust.check(&name, &configured, None).unwrap();
        let other_key = mk(
            doc! {"provider": "azure", "keyVaultEndpoint": "v.vault.azure.net", "keyName": "k2"},
        );
        assert!(matches!(
            trust.check(&name, &other_key, None),
            Err(KmsError::UntrustedMasterKey { .. })
        ));
        let allowlisted = mk(
            doc! {"provider": "azure", "keyVaultEndpoint": "OTHER.vault.azure.net:443", "keyName": "x"},
        );
        trust.check(&name, &allowlisted, None).unwrap();
        let evil =
            mk(doc! {"provider": "azure", "keyVaultEndpoint": "127.0.0.1:9", "keyName": "k"});
        let e = trust.check(&name, &evil, None).unwrap_err().to_string();
        assert!(
            e.contains("127.0.0.1:9") && e.contains("allowed_hosts"),
            "{e}"
        );
        assert!(KeyTrust::default().check(&name, &configured, None).is_err());
    }

    #[test]
    fn kmip_key_ids_vary_but_endpoints_do_not() {
        let name: ProviderName = "kmip".parse().unwrap();
        let own = Endpoint::parse("kmip.internal:5696").unwrap();
        let trust = KeyTrust::new(vec![mk(doc! {"provider": "kmip"})], &[]);
        trust
            .check(
                &name,
                &mk(doc! {"provider": "kmip", "keyId": "7"}),
                Some(&own),
            )
            .unwrap();
        trust
            .check(
                &name,
                &mk(doc! {"provider": "kmip", "keyId": "7", "endpoint": "kmip.internal:5696"}),
                Some(&own),
            )
            .unwrap();
        assert!(
            trust
                .check(
                    &name,
                    &mk(doc! {"provider": "kmip", "keyId": "7", "endpoint": "127.0.0.1:5696"}),
                    Some(&own),
                )
                .is_err()
        );
        // A flipped `delegated` is another master key.
        assert!(
            KeyTrust::new(vec![mk(doc! {"provider": "kmip"})], &[])
                .check(
                    &name,
                    &mk(doc! {"provider": "kmip", "keyId": "7", "delegated": true}),
                    None
                )
                .is_err()
        );
    }

    #[test]
    fn host_sets() {
        let mut s = HostSet::default();
        s.insert("Example.com", None);
        s.insert("127.0.0.1", Some(8443));
        assert!(s.permits("example.COM", Some(1)));
        assert!(s.permits("127.0.0.1", Some(8443)));
        assert!(!s.permits("127.0.0.1", Some(443)));
        assert!(!s.permits("evil.example.com", None));
    }
}
