//! `MASKLINE_SMPP`: the SMSCs to bind to, `smpp://system_id:password@host:port`
//! comma-separated.

use std::fmt;

/// One SMSC link's address and credentials. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmscUrl {
    pub system_id: String,
    pub password: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must look like smpp://system_id:password@host:port")]
    Shape,
    #[error("system_id is 1 to 15 characters")]
    SystemId,
    #[error("password is at most 8 characters")]
    Password,
    #[error("port must be 1 to 65535")]
    Port,
}

impl SmscUrl {
    pub fn parse(s: &str) -> Result<SmscUrl, UrlError> {
        let rest = s.trim().strip_prefix("smpp://").ok_or(UrlError::Shape)?;
        let (creds, addr) = rest.rsplit_once('@').ok_or(UrlError::Shape)?;
        let (system_id, password) = creds.split_once(':').unwrap_or((creds, ""));
        let (host, port) = addr.rsplit_once(':').ok_or(UrlError::Shape)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || addr.contains('/') {
            return Err(UrlError::Shape);
        }
        // SMPP 3.4 §5.2: C-octet strings of 16 and 9 octets with their NUL.
        let printable = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
        if system_id.is_empty() || system_id.len() > 15 || !printable(system_id) {
            return Err(UrlError::SystemId);
        }
        if password.len() > 8 || !printable(password) {
            return Err(UrlError::Password);
        }
        let port: u16 = port.parse().map_err(|_| UrlError::Port)?;
        if port == 0 {
            return Err(UrlError::Port);
        }
        Ok(SmscUrl {
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// Every link of a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<SmscUrl>, (usize, UrlError)> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
            .map(|(i, p)| SmscUrl::parse(p).map_err(|e| (i, e)))
            .collect()
    }

    /// The link's name in records (receipts come back on its SMSC):
    /// `system_id@host:port`.
    pub fn name(&self) -> String {
        format!("{}@{}:{}", self.system_id, self.host, self.port)
    }
}

impl fmt::Debug for SmscUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "smpp://{}:<hidden>@{}:{}",
            self.system_id, self.host, self.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        let l = SmscUrl::parse("smpp://maskline:secret@127.0.0.1:2775").unwrap();
        assert_eq!(
            (
                l.system_id.as_str(),
                l.password.as_str(),
                l.host.as_str(),
                l.port
            ),
            ("maskline", "secret", "127.0.0.1", 2775)
        );
        assert_eq!(l.name(), "maskline@127.0.0.1:2775");
        assert!(!format!("{l:?}").contains("secret"));
        let two = SmscUrl::parse_list("smpp://a:b@h1:1, smpp://c:d@h2:2").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(
            SmscUrl::parse("smpp://[::1]:2775").err(),
            Some(UrlError::Shape)
        );
        let v6 = SmscUrl::parse("smpp://id:pw@[::1]:2775").unwrap();
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn refuses_what_smpp_cannot_carry() {
        for (bad, e) in [
            ("http://a:b@h:1", UrlError::Shape),
            ("smpp://a:b@h", UrlError::Shape),
            ("smpp://:b@h:1", UrlError::SystemId),
            ("smpp://sixteen-chars-id:b@h:1", UrlError::SystemId),
            ("smpp://a:ninechars@h:1", UrlError::Password),
            ("smpp://a:b@h:0", UrlError::Port),
            ("smpp://a:b@h:99999", UrlError::Port),
        ] {
            assert_eq!(SmscUrl::parse(bad).err(), Some(e), "{bad}");
        }
        assert_eq!(
            SmscUrl::parse_list("smpp://a:b@h:1,nope")
                .err()
                .map(|(i, _)| i),
            Some(1)
        );
    }
}
