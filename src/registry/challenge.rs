//! The registry's authentication challenge: `WWW-Authenticate` on a `401`.
//!
//! Protocol facts relied on (RFC 9110 §11.6.1, the distribution token spec):
//! - a header holds one or more challenges, `scheme param=value, param="quoted", ...`, and one
//!   answer may carry several headers; schemes and parameter names are case-insensitive, values
//!   are tokens or quoted strings in which `\x` stands for `x`;
//! - commas separate both parameters and challenges: a name not followed by `=` starts the next
//!   challenge;
//! - `Bearer` names the token service: `realm` (the URL to ask), `service`, the `scope` the
//!   request needs (space-separated when several), and on a rejected token `error` =
//!   `invalid_token` (expired or revoked: get a new one) or `insufficient_scope` (get one for
//!   `scope`);
//! - `Basic` asks for HTTP Basic credentials on the registry itself (a plain `docker-registry`
//!   with htpasswd).
//!
//! The header comes from the network, so the parser accepts any bytes: it skips what it cannot
//! read and never panics; a Bearer challenge without a `realm` is unusable and left out.

/// One challenge as written: scheme (lowercased), parameters (names lowercased) in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChallenge {
    /// The scheme, lowercased: `bearer`, `basic`, ...
    pub scheme: String,
    /// `name=value` pairs, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl RawChallenge {
    /// The first value of a parameter (`name` in lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A challenge the client knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm`.
    Bearer(BearerChallenge),
    /// Send HTTP Basic credentials to the registry itself.
    Basic {
        /// The realm's name, for messages only.
        realm: Option<String>,
    },
}

/// A `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token service URL, as written (checked by the client before use).
    pub realm: String,
    /// The `service` to name in the token request.
    pub service: Option<String>,
    /// The scope the refused request needs, when the registry says.
    pub scope: Option<String>,
    /// Why a token was refused, when one was sent.
    pub error: Option<TokenProblem>,
}

/// Why the registry refused the token a request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    /// Expired, revoked or unknown: a new token may help.
    InvalidToken,
    /// Valid, but not for what the request needs: a token for the challenge's scope may help.
    InsufficientScope,
    /// Another error code, kept for the message.
    Other(String),
}

/// The challenges of every `WWW-Authenticate` value of one answer that the client can answer,
/// in order. Unknown schemes and Bearer challenges without a realm are left out.
pub fn challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values
        .into_iter()
        .flat_map(parse_raw)
        .filter_map(|raw| classify(&raw))
        .collect()
}

fn classify(raw: &RawChallenge) -> Option<Challenge> {
    match raw.scheme.as_str() {
        "bearer" => {
            let realm = raw.param("realm").filter(|r| !r.is_empty())?.to_owned();
            let error = raw.param("error").map(|code| match code {
                "invalid_token" => TokenProblem::InvalidToken,
                "insufficient_scope" => TokenProblem::InsufficientScope,
                other => TokenProblem::Other(other.chars().take(100).collect()),
            });
            Some(Challenge::Bearer(BearerChallenge {
                realm,
                service: raw.param("service").map(str::to_owned),
                scope: raw
                    .param("scope")
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned),
                error,
            }))
        }
        "basic" => Some(Challenge::Basic {
            realm: raw.param("realm").map(str::to_owned),
        }),
        _ => None,
    }
}

/// Parses one header value into its challenges, as written.
pub fn parse_raw(header: &str) -> Vec<RawChallenge> {
    let mut cursor = Cursor {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<RawChallenge> = Vec::new();
    loop {
        cursor.skip(|b| b == b',' || is_space(b));
        if cursor.at_end() {
            return out;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            // Not a token character where a scheme must start: skip it.
            cursor.pos += 1;
            continue;
        }
        let mut challenge = RawChallenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        // Parameters until a name without `=` (the next challenge) or the end.
        loop {
            cursor.skip(|b| b == b',' || is_space(b));
            let start = cursor.pos;
            let name = cursor.token();
            if name.is_empty() {
                if cursor.at_end() {
                    break;
                }
                // Garbage between parameters: skip one byte and go on.
                cursor.pos += 1;
                continue;
            }
            cursor.skip(is_space);
            if cursor.peek() != Some(b'=') {
                cursor.pos = start;
                break;
            }
            cursor.pos += 1;
            cursor.skip(is_space);
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                // A token value; token68 padding (`abc==`) stays part of it.
                let mut value = cursor.token();
                while cursor.peek() == Some(b'=') {
                    cursor.pos += 1;
                    value.push('=');
                }
                value
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.pos += 1;
        }
    }

    /// A run of token characters (RFC 9110 `tchar`, plus `/` and `:` so that unquoted realm
    /// URLs, which some registries send, survive).
    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip(|b| is_tchar(b) || b == b'/' || b == b':');
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    /// A quoted string starting at the opening quote; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        })
    }

    fn with_error(challenge: Challenge, error: TokenProblem) -> Challenge {
        let Challenge::Bearer(mut b) = challenge else {
            unreachable!()
        };
        b.error = Some(error);
        Challenge::Bearer(b)
    }

    #[test]
    fn real_world_headers() {
        let hub = "https://auth.docker.io/token";
        let table: Vec<(&str, Vec<Challenge>)> = vec![
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
                vec![bearer(hub, Some("registry.docker.io"), None)],
            ),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
                vec![bearer(
                    hub,
                    Some("registry.docker.io"),
                    Some("repository:library/ubuntu:pull"),
                )],
            ),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull",error="insufficient_scope""#,
                vec![with_error(
                    bearer(
                        hub,
                        Some("registry.docker.io"),
                        Some("repository:library/ubuntu:pull"),
                    ),
                    TokenProblem::InsufficientScope,
                )],
            ),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",error="invalid_token""#,
                vec![with_error(
                    bearer(hub, Some("registry.docker.io"), None),
                    TokenProblem::InvalidToken,
                )],
            ),
            (
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#,
                vec![bearer(
                    "https://ghcr.io/token",
                    Some("ghcr.io"),
                    Some("repository:user/image:pull"),
                )],
            ),
            (
                r#"Bearer realm="https://public.ecr.aws/token/",service="public.ecr.aws",scope="aws""#,
                vec![bearer(
                    "https://public.ecr.aws/token/",
                    Some("public.ecr.aws"),
                    Some("aws"),
                )],
            ),
            (
                r#"Bearer realm="https://quay.io/v2/auth",service="quay.io""#,
                vec![bearer("https://quay.io/v2/auth", Some("quay.io"), None)],
            ),
            (
                r#"Basic realm="basic-realm""#,
                vec![Challenge::Basic {
                    realm: Some("basic-realm".into()),
                }],
            ),
            (
                r#"Basic realm="Registry", Bearer realm="https://r.example/token", service="r""#,
                vec![
                    Challenge::Basic {
                        realm: Some("Registry".into()),
                    },
                    bearer("https://r.example/token", Some("r"), None),
                ],
            ),
            // Odd spacing, scheme and names in other cases, a tab.
            (
                "bearer   Realm = \"https://a.example/t\" ,\tSERVICE= \"s\" ,scope=\"repository:a:pull repository:b:pull\"",
                vec![bearer(
                    "https://a.example/t",
                    Some("s"),
                    Some("repository:a:pull repository:b:pull"),
                )],
            ),
            // Escapes inside quoted strings.
            (
                r#"Bearer realm="https://a.example/t\"x",service="a\\b""#,
                vec![bearer(r#"https://a.example/t"x"#, Some(r"a\b"), None)],
            ),
            // Unquoted values, URL included.
            (
                "Bearer realm=https://a.example/token,service=reg",
                vec![bearer("https://a.example/token", Some("reg"), None)],
            ),
            // An unknown scheme first, then one we know.
            (
                r#"Negotiate, Bearer realm="https://a.example/t""#,
                vec![bearer("https://a.example/t", None, None)],
            ),
            // Unusable or hostile.
            ("", vec![]),
            ("Bearer", vec![]),
            (r#"Bearer service="s""#, vec![]),
            (r#"Bearer realm="""#, vec![]),
            (",,,  ,", vec![]),
            ("=", vec![]),
            ("\"\"\"", vec![]),
            (
                r#"Bearer realm="https://a.example/unterminated"#,
                vec![bearer("https://a.example/unterminated", None, None)],
            ),
            (
                r#"Bearer realm="https://a.example/t\"#,
                vec![bearer("https://a.example/t", None, None)],
            ),
            (
                "Bearer realm=\"https://a.example/t\", error=\"something_new\"",
                vec![with_error(
                    bearer("https://a.example/t", None, None),
                    TokenProblem::Other("something_new".into()),
                )],
            ),
            (
                "Basic dXNlcjpwYXNz==",
                vec![Challenge::Basic { realm: None }],
            ),
        ];
        for (header, want) in table {
            assert_eq!(challenges([header]), want, "header {header:?}");
        }
    }

    #[test]
    fn several_headers_keep_their_order() {
        let got = challenges([
            r#"Basic realm="x""#,
            r#"Bearer realm="https://a.example/t""#,
        ]);
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Challenge::Basic { .. }));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Every prefix of nasty inputs, and a byte soup.
        let nasty = [
            "Bearer realm=\"\\",
            "Bearer ==,==\"\"\\\\",
            "Bearer realm=\"é\u{0}\u{7f}\", service=\u{fffd}",
            "\t\t,Bearer\t,realm\t=\t",
        ];
        for text in nasty {
            for end in 0..=text.len() {
                if let Some(prefix) = text.get(..end) {
                    let _ = challenges([prefix]);
                }
            }
        }
        let soup: String = (0u32..2000)
            .map(|i| char::from_u32((i * 7919) % 128).unwrap_or(' '))
            .collect();
        let _ = challenges([soup.as_str()]);
    }
}
