//! The connection string: its TLS parameters taken out, and a rendering
//! without the password.
//!
//! Written by hand because tokio-postgres refuses the libpq parameters
//! cipherdoc honours itself (`sslmode=verify-full`, `sslrootcert`): they are
//! taken out here and the rest is handed to tokio-postgres unchanged. The
//! tokenizers follow tokio-postgres's own (`config.rs`: the lenient libpq
//! URL form and the `key=value` form), so that both see the same
//! parameters. Nothing here ever copies a value into an error.

use std::fmt;
use std::ops::Range;

use zeroize::Zeroizing;

use super::tls::PgConnectError;

/// A PostgreSQL connection string (`postgres://user:password@host/db?…` or
/// `host=… user=… password=…`) that does not show its password: `Debug`
/// and [`PgUrl::redacted`] print `***` in its place, and the text is
/// zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    text: Zeroizing<String>,
}

impl PgUrl {
    /// Wrap a connection string.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: Zeroizing::new(text.into()),
        }
    }

    /// The connection string itself, password included: pass it on, never
    /// print it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The connection string with every password replaced by `***`; when it
    /// cannot be parsed, a placeholder (the password's place is unknown).
    pub fn redacted(&self) -> String {
        let Ok(parsed) = Parsed::parse(&self.text) else {
            return "<unparsable connection string, hidden>".to_owned();
        };
        let mut secret: Vec<Range<usize>> = parsed.password.iter().cloned().collect();
        secret.extend(
            parsed
                .params
                .iter()
                .filter(|p| p.key == "password")
                .map(|p| p.value.clone()),
        );
        secret.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for r in secret {
            out.push_str(&self.text[at..r.start]);
            out.push_str("***");
            at = r.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgUrl").field(&self.redacted()).finish()
    }
}

impl From<&str> for PgUrl {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for PgUrl {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// The parameters cipherdoc takes out of the connection string (last one
/// wins, as in libpq), and the rest for tokio-postgres.
pub(super) struct Split {
    /// The connection string without the parameters below.
    pub rest: Zeroizing<String>,
    /// `sslmode`, as written.
    pub sslmode: Option<String>,
    /// `sslrootcert`, as written.
    pub sslrootcert: Option<String>,
    /// Other libpq TLS parameters, which cipherdoc does not support.
    pub unsupported: Vec<String>,
}

/// libpq's TLS parameters beyond `sslmode` and `sslrootcert`: refused by
/// name rather than passed on (tokio-postgres would only say "unknown
/// option").
const UNSUPPORTED_TLS_PARAMS: &[&str] = &[
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
    "gssencmode",
];

pub(super) fn split(text: &str) -> Result<Split, PgConnectError> {
    let parsed = Parsed::parse(text)?;
    let mut split = Split {
        rest: Zeroizing::new(String::with_capacity(text.len())),
        sslmode: None,
        sslrootcert: None,
        unsupported: Vec::new(),
    };
    let mut kept = Vec::new();
    for p in &parsed.params {
        match p.key.as_str() {
            "sslmode" => split.sslmode = Some(p.decoded(text)?.to_string()),
            "sslrootcert" => split.sslrootcert = Some(p.decoded(text)?.to_string()),
            k if UNSUPPORTED_TLS_PARAMS.contains(&k) => split.unsupported.push(k.to_owned()),
            _ => kept.push(p.whole.clone()),
        }
    }
    let rest = &mut split.rest;
    match parsed.params_start {
        // URL form: everything before the query, then the kept parameters.
        Some(q) => {
            rest.push_str(&text[..q]);
            for (i, r) in kept.iter().enumerate() {
                rest.push_str(if i == 0 { "?" } else { "&" });
                rest.push_str(&text[r.clone()]);
            }
        }
        None if parsed.form == Form::Url => rest.push_str(text),
        None => {
            for (i, r) in kept.iter().enumerate() {
                if i > 0 {
                    rest.push(' ');
                }
                rest.push_str(&text[r.clone()]);
            }
        }
    }
    Ok(split)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Url,
    KeyValue,
}

/// One `key=value` parameter; ranges index the connection string.
struct Param {
    key: String,
    /// The value as written (percent-encoded, quoted or escaped).
    value: Range<usize>,
    /// `key=value` as written.
    whole: Range<usize>,
    form: Form,
}

impl Param {
    fn decoded<'t>(&self, text: &'t str) -> Result<std::borrow::Cow<'t, str>, PgConnectError> {
        let raw = &text[self.value.clone()];
        match self.form {
            Form::Url => percent_decode(raw),
            Form::KeyValue => Ok(std::borrow::Cow::Owned(unescape(raw))),
        }
    }
}

struct Parsed {
    form: Form,
    params: Vec<Param>,
    /// The password of a URL's user-info part.
    password: Option<Range<usize>>,
    /// Where a URL's `?` is.
    params_start: Option<usize>,
}

fn syntax(reason: impl Into<String>) -> PgConnectError {
    PgConnectError::Syntax {
        reason: reason.into(),
    }
}

impl Parsed {
    fn parse(text: &str) -> Result<Self, PgConnectError> {
        let prefix = ["postgres://", "postgresql://"]
            .into_iter()
            .find(|p| text.starts_with(p));
        match prefix {
            Some(p) => Self::parse_url(text, p.len()),
            None => Self::parse_key_value(text),
        }
    }

    /// tokio-postgres's URL reading: user-info up to the first `@`
    /// anywhere, host up to `/` or `?`, path up to `?`, then `key=value`
    /// pairs where the key runs to the next `=` and the value to the next
    /// `&`.
    fn parse_url(text: &str, start: usize) -> Result<Self, PgConnectError> {
        let mut password = None;
        let mut at = start;
        if let Some(rel) = text[start..].find('@') {
            let creds = start..start + rel;
            if let Some(colon) = text[creds.clone()].find(':') {
                password = Some(creds.start + colon + 1..creds.end);
            }
            at = creds.end + 1;
        }
        let params_start = text[at..].find('?').map(|q| at + q);
        let mut params = Vec::new();
        if let Some(q) = params_start {
            let mut i = q + 1;
            while i < text.len() {
                let Some(eq) = text[i..].find('=').map(|e| i + e) else {
                    // Never dropped silently: it might be `sslmode`.
                    return Err(syntax(format!("the parameter at byte {i} has no `=`")));
                };
                let end = text[eq + 1..].find('&').map_or(text.len(), |a| eq + 1 + a);
                let key = percent_decode(&text[i..eq]).map_or_else(|_| String::new(), Into::into);
                params.push(Param {
                    key,
                    value: eq + 1..end,
                    whole: i..end,
                    form: Form::Url,
                });
                i = end + 1;
            }
        }
        Ok(Self {
            form: Form::Url,
            params,
            password,
            params_start,
        })
    }

    /// tokio-postgres's `key = value` reading: whitespace-separated, a
    /// value either `'quoted'` or bare, `\` escaping the next character in
    /// both.
    fn parse_key_value(text: &str) -> Result<Self, PgConnectError> {
        let bytes = text.as_bytes();
        let mut params = Vec::new();
        let mut i = 0;
        let skip_ws = |mut i: usize| {
            while let Some(c) = text[i..].chars().next()
                && c.is_whitespace()
            {
                i += c.len_utf8();
            }
            i
        };
        loop {
            i = skip_ws(i);
            let key_start = i;
            while let Some(c) = text[i..].chars().next()
                && !c.is_whitespace()
                && c != '='
            {
                i += c.len_utf8();
            }
            if i == key_start {
                break;
            }
            let key = text[key_start..i].to_owned();
            i = skip_ws(i);
            if bytes.get(i) != Some(&b'=') {
                return Err(syntax(format!(
                    "expected `=` after the parameter name at byte {i}"
                )));
            }
            i = skip_ws(i + 1);
            let value_start = i;
            if bytes.get(i) == Some(&b'\'') {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(syntax("a quoted value is not terminated")),
                        Some(b'\'') => break,
                        Some(b'\\') => i = next_char(text, next_char(text, i)),
                        Some(_) => i = next_char(text, i),
                    }
                }
                i += 1;
            } else {
                while let Some(c) = text[i..].chars().next()
                    && !c.is_whitespace()
                {
                    i = if c == '\\' {
                        next_char(text, i + 1)
                    } else {
                        i + c.len_utf8()
                    };
                }
                if i == value_start {
                    return Err(syntax(format!("a value is missing at byte {i}")));
                }
            }
            params.push(Param {
                key,
                value: value_start..i,
                whole: key_start..i,
                form: Form::KeyValue,
            });
        }
        Ok(Self {
            form: Form::KeyValue,
            params,
            password: None,
            params_start: None,
        })
    }
}

/// The index after the character at `i` (or the end).
fn next_char(text: &str, i: usize) -> usize {
    text.get(i..)
        .and_then(|t| t.chars().next())
        .map_or(text.len(), |c| i + c.len_utf8())
}

/// A `key=value` value without its quotes and escapes.
fn unescape(raw: &str) -> String {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of one hex digit.
fn hex(b: Option<&u8>) -> Option<u8> {
    match b? {
        d @ b'0'..=b'9' => Some(d - b'0'),
        l @ b'a'..=b'f' => Some(l - b'a' + 10),
        u @ b'A'..=b'F' => Some(u - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(raw: &str) -> Result<std::borrow::Cow<'_, str>, PgConnectError> {
    if !raw.contains('%') {
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // As tokio-postgres (percent-encoding): a `%` not followed by two
        // hex digits stands for itself.
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| syntax("a percent-encoded parameter is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(s: &str) -> String {
        split(s).map(|s| s.rest.to_string()).unwrap()
    }

    #[test]
    fn url_password_is_redacted_everywhere() {
        let u = PgUrl::new(
            "postgres://app:s3cr%40t@db.example.com:5432/x?password=two&sslmode=require",
        );
        let r = u.redacted();
        assert_eq!(
            r,
            "postgres://app:***@db.example.com:5432/x?password=***&sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cr"));
        let kv = PgUrl::new("host=db user=app password='it''s \\' secret' dbname=x");
        // `''` is not an escape in this form: the quoted value ends early
        // and the rest is a syntax error, so nothing is shown.
        assert!(!format!("{kv:?}").contains("secret"));
        let kv = PgUrl::new("host=db user=app password='a \\' secret' dbname=x");
        assert_eq!(kv.redacted(), "host=db user=app password=*** dbname=x");
        let bare = PgUrl::new("host=db password=s\\ ecret");
        assert_eq!(bare.redacted(), "host=db password=***");
        let unparsable = PgUrl::new("host=db password='never closed");
        assert!(!format!("{unparsable:?}").contains("never"));
    }

    #[test]
    fn tls_parameters_are_taken_out() {
        let s = split(
            "postgres://u:p@h/db?sslmode=verify-full&application_name=a&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(s.rest.as_str(), "postgres://u:p@h/db?application_name=a");
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/ca.pem"));
        assert_eq!(rest("postgres://h/db?sslmode=disable"), "postgres://h/db");
        assert_eq!(rest("postgres://h/db"), "postgres://h/db");
        let s = split("host=h sslmode = 'verify-full' sslrootcert=/a\\ b.pem user=u sslcert=c")
            .unwrap();
        assert_eq!(s.rest.as_str(), "host=h user=u");
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/a b.pem"));
        assert_eq!(s.unsupported, ["sslcert"]);
        // The last one wins, as in libpq.
        let s = split("postgres://h/db?sslmode=disable&sslmode=require").unwrap();
        assert_eq!(s.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn what_is_left_parses_as_tokio_postgres_would() {
        for s in [
            "postgres://u:p%3Fq@h1:5432,h2/db?application_name=a%20b&sslmode=require",
            "host=h1,h2 port=5432 user='u s' password=p\\ q dbname=db sslmode=require",
        ] {
            let cfg: tokio_postgres::Config = split(s).unwrap().rest.parse().unwrap();
            assert_eq!(cfg.get_hosts().len(), 2);
            assert_eq!(cfg.get_dbname(), Some("db"));
        }
    }

    #[test]
    fn a_parameter_without_a_value_is_an_error_not_dropped() {
        assert!(matches!(
            split("postgres://h/db?sslmode"),
            Err(PgConnectError::Syntax { .. })
        ));
        assert!(matches!(
            split("postgres://h/db?a=1&sslmode"),
            Err(PgConnectError::Syntax { .. })
        ));
        assert_eq!(
            split("postgres://h/db?sslrootcert=%2Fa%25b%zz.pem")
                .unwrap()
                .sslrootcert
                .as_deref(),
            Some("/a%b%zz.pem")
        );
    }

    #[test]
    fn errors_carry_no_value() {
        let e = split("password='secret-canary").err().unwrap().to_string();
        assert!(!e.contains("canary"), "{e}");
        let e = split("postgres://h/db?sslmode=%FF%FEcanary")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("canary"), "{e}");
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        /// Every byte but unreserved ones percent-encoded.
        fn enc(s: &str) -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }

        /// A `key=value` value, quoted and escaped.
        fn quote(s: &str) -> String {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }

        /// Values with the characters the two forms treat specially.
        fn value() -> impl Strategy<Value = String> {
            "[a-z /:@?&=%'\\\\]{1,12}"
        }

        proptest! {
            /// Whatever the values, the split string parses (under
            /// tokio-postgres) to what the whole string says minus the TLS
            /// parameters, those are found, and the password never shows.
            #[test]
            fn split_and_redaction_hold_for_any_values(
                user in "[a-z]{1,8}",
                password in "PW[A-Z0-9]{10}",
                app in value(),
                options in value(),
                root in value(),
                key_value in any::<bool>(),
                password_in_query in any::<bool>(),
            ) {
                let text = if key_value {
                    format!(
                        "host=db.example.com sslrootcert={} user={} application_name={} password={} options={} sslmode=verify-full",
                        quote(&root), quote(&user), quote(&app), quote(&password), quote(&options)
                    )
                } else if password_in_query {
                    format!(
                        "postgres://{}@db.example.com:5433/d?sslrootcert={}&application_name={}&password={}&options={}&sslmode=verify-full",
                        enc(&user), enc(&root), enc(&app), enc(&password), enc(&options)
                    )
                } else {
                    format!(
                        "postgres://{}:{}@db.example.com:5433/d?sslrootcert={}&application_name={}&options={}&sslmode=verify-full",
                        enc(&user), enc(&password), enc(&root), enc(&app), enc(&options)
                    )
                };
                let s = split(&text).unwrap();
                prop_assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
                prop_assert_eq!(s.sslrootcert.as_deref(), Some(root.as_str()));
                let cfg: tokio_postgres::Config = s.rest.parse().unwrap();
                prop_assert_eq!(cfg.get_user(), Some(user.as_str()));
                prop_assert_eq!(cfg.get_password(), Some(password.as_bytes()));
                prop_assert_eq!(cfg.get_application_name(), Some(app.as_str()));
                prop_assert_eq!(cfg.get_options(), Some(options.as_str()));
                let shown = PgUrl::new(text.as_str()).redacted();
                prop_assert!(!shown.contains(&password), "{}", shown);
                prop_assert!(shown.contains("***"));
            }
        }
    }
}
