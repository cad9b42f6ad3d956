//! Outgoing mail over SMTP.
//!
//! [`Mailer::from_url`] reads the relay from a single URL:
//!
//! | URL                              | Connection                          |
//! |----------------------------------|-------------------------------------|
//! | `smtp://host:port`               | plain, no TLS (local relays, tests) |
//! | `smtp://user:pass@host:port`     | plain, with AUTH                    |
//! | `smtps://host:port`              | implicit TLS (default port 465)     |
//! | `smtp+starttls://host:port`      | STARTTLS required (default 587)     |
//!
//! User name and password may be percent-encoded (`%40` for `@`). The port
//! defaults to 25 for `smtp`. [`Mailer::send`] sends one plain-text UTF-8
//! message. Neither `Debug` nor any [`MailError`] ever shows the password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP exchange may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

const URL_FORMS: &str = "smtp://host:port, smtp://user:pass@host:port, smtps://host:port \
     or smtp+starttls://host:port";

/// An error setting up or sending mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP URL could not be understood.
    #[error("the SMTP URL must look like {URL_FORMS}: {0}")]
    InvalidUrl(String),
    /// The sender address is not a valid mailbox.
    #[error(
        "the sender address {address:?} is not valid ({source}); use an address like \
         `waymark@example.com` or `Waymark <waymark@example.com>`"
    )]
    InvalidFrom {
        address: String,
        source: lettre::address::AddressError,
    },
    /// The recipient address is not a valid mailbox.
    #[error(
        "the recipient address {address:?} is not valid ({source}); use an address like \
         `someone@example.com`"
    )]
    InvalidRecipient {
        address: String,
        source: lettre::address::AddressError,
    },
    /// The TLS settings for the relay could not be prepared.
    #[error("could not set up TLS for the SMTP server {host:?} ({source}); check the host name")]
    Tls {
        host: String,
        source: lettre::transport::smtp::Error,
    },
    /// The message could not be assembled.
    #[error("could not build the mail message ({0}); check the subject and addresses")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server could not be reached or refused the message.
    #[error(
        "the SMTP server did not take the message ({0}); check that it is reachable, \
         that the URL's scheme matches its TLS setup and that the credentials are right"
    )]
    Send(#[source] lettre::transport::smtp::Error),
}

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    ImplicitTls,
    StartTls,
}

/// The parts of an SMTP URL.
struct SmtpUrl {
    security: Security,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

/// Sends mail through one SMTP relay. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    security: Security,
    host: Arc<str>,
    port: u16,
    user: Option<Arc<str>>,
}

impl Mailer {
    /// A mailer for the relay at `url` (see the module docs for the forms),
    /// sending as `from` (`addr@host` or `Name <addr@host>`).
    pub fn from_url(url: &str, from: &str) -> Result<Mailer, MailError> {
        let parsed = parse_url(url)?;
        let from_box: Mailbox = from.parse().map_err(|source| MailError::InvalidFrom {
            address: from.to_owned(),
            source,
        })?;
        let tls_error = |source| MailError::Tls {
            host: parsed.host.clone(),
            source,
        };
        let builder = match parsed.security {
            Security::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&parsed.host)
            }
            Security::ImplicitTls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&parsed.host).map_err(tls_error)?
            }
            Security::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&parsed.host)
                    .map_err(tls_error)?
            }
        };
        let mut builder = builder.port(parsed.port).timeout(Some(TIMEOUT));
        let user = parsed
            .credentials
            .as_ref()
            .map(|(u, _)| Arc::from(u.as_str()));
        if let Some((user, pass)) = parsed.credentials {
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(Mailer {
            transport: Arc::new(builder.build()),
            from: from_box,
            security: parsed.security,
            host: Arc::from(parsed.host.as_str()),
            port: parsed.port,
            user,
        })
    }

    /// Sends a plain-text UTF-8 message to `to`.
    pub async fn send(&self, to: &str, subject: &str, text_body: &str) -> Result<(), MailError> {
        let to_box: Mailbox = to.parse().map_err(|source| MailError::InvalidRecipient {
            address: to.to_owned(),
            source,
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text_body.to_owned())?;
        self.transport
            .send(message)
            .await
            .map_err(MailError::Send)?;
        Ok(())
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Splits an SMTP URL into its parts. Errors never repeat the password.
fn parse_url(url: &str) -> Result<SmtpUrl, MailError> {
    let invalid = |what: &str| MailError::InvalidUrl(what.to_owned());
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("it has no scheme"))?;
    let (security, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => (Security::Plain, 25),
        "smtps" => (Security::ImplicitTls, 465),
        "smtp+starttls" => (Security::StartTls, 587),
        _ => {
            return Err(MailError::InvalidUrl(format!(
                "the scheme {scheme:?} is not one of smtp, smtps, smtp+starttls"
            )));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(invalid("it may not have a path, query or fragment"));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let credentials = match userinfo {
        None => None,
        Some(userinfo) => {
            let (user, pass) = userinfo
                .split_once(':')
                .ok_or_else(|| invalid("the user needs a password: user:pass@host"))?;
            let user = percent_decode(user)
                .ok_or_else(|| invalid("the user name is not valid percent-encoded UTF-8"))?;
            let pass = percent_decode(pass)
                .ok_or_else(|| invalid("the password is not valid percent-encoded UTF-8"))?;
            if user.is_empty() {
                return Err(invalid("the user name is empty"));
            }
            Some((user, pass))
        }
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("the IPv6 address lacks its closing ]"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("only :port may follow the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the host is missing"));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
    };
    Ok(SmtpUrl {
        security,
        host: host.to_owned(),
        port,
        credentials,
    })
}

/// Decodes `%XX` escapes; `None` on a bad escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_url_forms() {
        let u = parse_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (u.security, u.host.as_str(), u.port),
            (Security::Plain, "127.0.0.1", 2525)
        );
        assert!(u.credentials.is_none());

        let u = parse_url("smtp://us%40er:p%3Ass@mail.example:25/").unwrap();
        assert_eq!(u.credentials, Some(("us@er".to_owned(), "p:ss".to_owned())));

        let u = parse_url("smtps://mail.example").unwrap();
        assert_eq!((u.security, u.port), (Security::ImplicitTls, 465));
        let u = parse_url("smtp+starttls://mail.example").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 587));
        let u = parse_url("smtp://[::1]:2525").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 2525));

        for bad in [
            "http://x",
            "mail.example",
            "smtp://",
            "smtp://host:0",
            "smtp://host:port",
            "smtp://host/path",
            "smtp://user@host",
            "smtp://u:%zz@host",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_shows_the_password() {
        let mailer = Mailer::from_url(
            "smtp://me:hunter2@localhost:2525",
            "Waymark <w@example.test>",
        )
        .unwrap();
        let debug = format!("{mailer:?}");
        assert!(
            debug.contains("me") && !debug.contains("hunter2"),
            "{debug}"
        );
        let err = Mailer::from_url("smtp://me:hunter2@localhost:nope", "w@example.test")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
