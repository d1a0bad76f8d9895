//! Connection strings for shards: `mysql://user[:password]@host[:port][?params]`.
//!
//! A [`Dsn`] holds the password but never shows it: `Display` and `Debug` both print the
//! redacted form, and no [`DsnError`] message contains any part of the input string, because
//! a misplaced `@`, `/`, `?` or `#` can move part of a password into any other component.

use std::fmt;
use std::str::FromStr;

/// Port used when a DSN names none.
const DEFAULT_PORT: u16 = 3306;

/// Query parameters a DSN may carry. The names and meanings are mysql_async's URL parameters,
/// so the connection code can hand them on unchanged.
pub const KNOWN_PARAMS: &[&str] = &[
    "compression",
    "max_allowed_packet",
    "prefer_socket",
    "socket",
    "tcp_keepalive",
    "tcp_nodelay",
    "wait_timeout",
];

/// A parsed shard connection string. The password is kept for connecting but is redacted in
/// every textual form (`mysql://app:***@10.0.0.1:3306`).
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    scheme: &'static str,
    user: String,
    password: Option<String>,
    host: String,
    /// True when `host` is an IPv6 address, which must be bracketed in URL form.
    ipv6: bool,
    port: u16,
    params: Vec<(String, String)>,
}

/// Why a connection string was rejected. Messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsnError {
    #[error(
        "it is not a valid URL ({0}); write it as mysql://user:password@host:port and \
         percent-encode any of `@ : / ? # %` in the user or password (e.g. `@` as %40)"
    )]
    Url(url::ParseError),
    #[error("its scheme must be mysql:// or mariadb://")]
    Scheme,
    #[error("it names no user; write it as mysql://user:password@host:port")]
    MissingUser,
    #[error("it names no host; write it as mysql://user:password@host:port")]
    MissingHost,
    #[error("port 0 is not a usable port; give the server's port, or omit it for 3306")]
    ZeroPort,
    #[error("the {0} is not valid UTF-8 after percent-decoding; check its %XX escapes")]
    NotUtf8(&'static str),
    #[error(
        "it has a path after the host; remove it (the database comes from `database:` in \
         schemagate.yaml), and percent-encode `/` in a password as %2F"
    )]
    Path,
    #[error("it has a `#` fragment; percent-encode `#` in a password as %23")]
    Fragment,
    #[error("its query contains `@`; percent-encode `@` and `?` in a password (%40, %3F)")]
    AtInQuery,
    #[error(
        "it has the unknown parameter `{0}`; the known parameters are: {known}",
        known = KNOWN_PARAMS.join(", ")
    )]
    UnknownParam(String),
    #[error("its parameter `{0}` is given more than once; keep one")]
    DuplicateParam(String),
    #[error("its parameter `{name}` has an invalid value; expected {expected}")]
    ParamValue {
        name: String,
        expected: &'static str,
    },
}

impl Dsn {
    /// Parses `mysql://user[:password]@host[:port][?params]` (also `mariadb://`). User and
    /// password are percent-decoded.
    pub fn parse(text: &str) -> Result<Dsn, DsnError> {
        let url = url::Url::parse(text.trim()).map_err(|e| match e {
            url::ParseError::EmptyHost => DsnError::MissingHost,
            e => DsnError::Url(e),
        })?;
        let scheme = match url.scheme() {
            "mysql" => "mysql",
            "mariadb" => "mariadb",
            _ => return Err(DsnError::Scheme),
        };
        let user = percent_decode(url.username()).ok_or(DsnError::NotUtf8("user"))?;
        if user.is_empty() {
            return Err(DsnError::MissingUser);
        }
        let password = match url.password() {
            Some(p) => Some(percent_decode(p).ok_or(DsnError::NotUtf8("password"))?),
            None => None,
        };
        let (host, ipv6) = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => (d.to_string(), false),
            Some(url::Host::Ipv4(a)) => (a.to_string(), false),
            Some(url::Host::Ipv6(a)) => (a.to_string(), true),
            _ => return Err(DsnError::MissingHost),
        };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(DsnError::ZeroPort);
        }
        if !(url.path().is_empty() || url.path() == "/") {
            return Err(DsnError::Path);
        }
        if url.fragment().is_some() {
            return Err(DsnError::Fragment);
        }
        let params = match url.query() {
            Some(q) if q.contains('@') => return Err(DsnError::AtInQuery),
            Some(q) => parse_params(q)?,
            None => Vec::new(),
        };
        Ok(Dsn {
            scheme,
            user,
            password,
            host,
            ipv6,
            port,
            params,
        })
    }

    /// The user name, percent-decoded.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, percent-decoded; `None` when the DSN has none (or an empty one).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Host name or address; IPv6 addresses come without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 3306 unless the DSN names one.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Query parameters in the order written; every name is one of [`KNOWN_PARAMS`] and
    /// appears once.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dsn::parse(s)
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, percent_encode(&self.user))?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.ipv6 {
            write!(f, "@[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "@{}:{}", self.host, self.port)?;
        }
        for (i, (name, value)) in self.params.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn({self})")
    }
}

#[derive(Clone, Copy)]
enum ParamKind {
    Bool,
    Unsigned,
    Compression,
    Path,
}

fn param_kind(name: &str) -> Option<ParamKind> {
    Some(match name {
        "prefer_socket" | "tcp_nodelay" => ParamKind::Bool,
        "max_allowed_packet" | "tcp_keepalive" | "wait_timeout" => ParamKind::Unsigned,
        "compression" => ParamKind::Compression,
        "socket" => ParamKind::Path,
        _ => return None,
    })
}

fn parse_params(query: &str) -> Result<Vec<(String, String)>, DsnError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name).ok_or(DsnError::NotUtf8("parameter name"))?;
        let value = percent_decode(raw_value).ok_or(DsnError::NotUtf8("parameter value"))?;
        let Some(kind) = param_kind(&name) else {
            return Err(DsnError::UnknownParam(name));
        };
        if params.iter().any(|(n, _)| *n == name) {
            return Err(DsnError::DuplicateParam(name));
        }
        let expected = match kind {
            ParamKind::Bool if value != "true" && value != "false" => Some("true or false"),
            ParamKind::Unsigned if value.parse::<u32>().is_err() => Some("a whole number"),
            ParamKind::Compression
                if !matches!(value.as_str(), "fast" | "best" | "on" | "true")
                    && !matches!(value.parse::<u8>(), Ok(0..=9)) =>
            {
                Some("fast, best, on, true or a level 0-9")
            }
            ParamKind::Path if value.is_empty() => Some("a socket path"),
            _ => None,
        };
        if let Some(expected) = expected {
            return Err(DsnError::ParamValue { name, expected });
        }
        params.push((name, value));
    }
    Ok(params)
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays literal, as in URLs.
/// `None` when the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so the result can stand
/// anywhere in a URL's user-info.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-Pa55";

    #[test]
    fn parses_all_parts_with_default_port() {
        let dsn = Dsn::parse(&format!("mysql://app:{SECRET}@10.0.0.1")).unwrap();
        assert_eq!(dsn.user(), "app");
        assert_eq!(dsn.password(), Some(SECRET));
        assert_eq!(dsn.host(), "10.0.0.1");
        assert_eq!(dsn.port(), 3306);
        assert!(dsn.params().is_empty());
        assert_eq!(dsn.to_string(), "mysql://app:***@10.0.0.1:3306");
    }

    #[test]
    fn display_and_debug_redact_the_password() {
        let dsn: Dsn = format!("mariadb://app:{SECRET}@db.example:3307?tcp_nodelay=true")
            .parse()
            .unwrap();
        assert_eq!(
            dsn.to_string(),
            "mariadb://app:***@db.example:3307?tcp_nodelay=true"
        );
        let debug = format!("{dsn:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("***"));
        let pretty = format!("{dsn:#?}");
        assert!(!pretty.contains(SECRET));
    }

    #[test]
    fn percent_encoded_user_and_password_are_decoded() {
        let dsn = Dsn::parse("mysql://r%C3%A9ader:p%40ss%3Aw%2Fd%25@h:1234").unwrap();
        assert_eq!(dsn.user(), "réader");
        assert_eq!(dsn.password(), Some("p@ss:w/d%"));
        assert_eq!(dsn.port(), 1234);
        assert_eq!(dsn.to_string(), "mysql://r%C3%A9ader:***@h:1234");
    }

    #[test]
    fn no_password_and_ipv6() {
        let dsn = Dsn::parse("mysql://app@[::1]:3306/").unwrap();
        assert_eq!(dsn.password(), None);
        assert_eq!(dsn.host(), "::1");
        assert_eq!(dsn.to_string(), "mysql://app@[::1]:3306");
    }

    #[test]
    fn params_are_checked() {
        let dsn = Dsn::parse("mysql://a@h?compression=fast&wait_timeout=60").unwrap();
        assert_eq!(
            dsn.params(),
            &[
                ("compression".to_string(), "fast".to_string()),
                ("wait_timeout".to_string(), "60".to_string())
            ]
        );
        assert_eq!(
            Dsn::parse("mysql://a@h?sslmode=on").unwrap_err(),
            DsnError::UnknownParam("sslmode".into())
        );
        assert_eq!(
            Dsn::parse("mysql://a@h?tcp_nodelay=true&tcp_nodelay=false").unwrap_err(),
            DsnError::DuplicateParam("tcp_nodelay".into())
        );
        assert!(matches!(
            Dsn::parse("mysql://a@h?tcp_nodelay=yes").unwrap_err(),
            DsnError::ParamValue { .. }
        ));
    }

    #[test]
    fn rejects_bad_dsns_without_quoting_the_password() {
        let cases = [
            (format!("postgres://app:{SECRET}@h"), DsnError::Scheme),
            (format!("mysql://:{SECRET}@h"), DsnError::MissingUser),
            (format!("mysql://app:{SECRET}@h:0"), DsnError::ZeroPort),
            (format!("mysql://app:{SECRET}@h/db"), DsnError::Path),
            (format!("mysql://app@h#{SECRET}"), DsnError::Fragment),
            (format!("mysql://app:{SECRET}@"), DsnError::MissingHost),
            (format!("mysql://app:12?{SECRET}@h"), DsnError::MissingUser),
            (format!("mysql://app@h:12?{SECRET}@h"), DsnError::AtInQuery),
        ];
        for (text, want) in cases {
            let err = Dsn::parse(&text).unwrap_err();
            assert_eq!(err, want, "{text}");
            assert!(!err.to_string().contains(SECRET), "{err}");
            assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
        }
        for text in [
            format!("mysql://app:{SECRET}/x@h"),
            format!("mysql://app:{SECRET}@h:99999"),
            SECRET.to_string(),
            format!("mysql://app:%FF{SECRET}@h"),
        ] {
            let err = Dsn::parse(&text).unwrap_err();
            assert!(!err.to_string().contains(SECRET), "{err}");
            assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
        }
    }

    #[test]
    fn percent_round_trip() {
        let raw = "p@ss w/rd:%?#é";
        assert_eq!(percent_decode(&percent_encode(raw)).as_deref(), Some(raw));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
