//! Console accounts: a password is kept only as its Argon2id hash, and ten
//! failed sign-ins in a row lock the account for fifteen minutes. The count
//! lives in the store, not in a node's memory, so that the lockout holds on
//! every node (the console contract).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use maskline_core::{TenantId, UnixTime};
use maskline_store::{ConsoleSession, Role, User, UserId, Write};
use rand::Rng as _;

use crate::{Engine, Error, Result};

/// Failed sign-ins in a row that lock an account.
pub const MAX_FAILED_SIGNINS: u32 = 10;
/// How long a lockout lasts.
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest, in bytes: hashing cost does not grow with it, but nobody
/// needs more and a bound keeps requests small.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The soonest a refused sign-in is answered. A known email's refusal also
/// waits for its failure count to be committed, and a locked account's skips
/// the password check; without a floor, those differences in time would tell
/// which emails have accounts.
pub const REFUSAL_FLOOR: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a console session lasts (unless signed out first).
pub const SESSION_SECS: i64 = 12 * 3600;

/// A console account to create.
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub role: Role,
    /// `None` for an admin; every other role belongs to a tenant.
    pub tenant: Option<TenantId>,
}

/// How a sign-in ended.
#[derive(Debug)]
pub enum SignIn {
    Accepted(User),
    /// Unknown email or wrong password: the caller cannot tell which.
    Refused,
    /// Too many failures: no password is checked until then.
    Locked {
        until: UnixTime,
    },
}

/// The sign-in name: trimmed and lower-cased; `None` unless it looks like
/// an address (one `@` with something on each side, no spaces or control
/// characters, at most 254 bytes).
pub fn normalise_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || invisible(c));
    ok.then_some(email)
}

/// Characters that show as nothing (soft hyphen, zero-width and
/// direction marks, word joiners, the byte-order mark): two addresses
/// that look the same must be one account.
fn invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidUser {
        field,
        reason: reason.into(),
    }
}

/// The Argon2id PHC string of `password` with a fresh random salt
/// (Argon2's defaults: 19 MiB, 2 passes, 1 lane; OWASP's minimum).
fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| invalid("password", format!("cannot be hashed: {e}")))
}

fn password_matches(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Runs a password hash or check on a blocking thread, at most one per
/// core at a time: each takes 19 MiB and about 20 ms of a core, and sign-in
/// is open to anyone, so requests beyond wait for a turn (bounded by the
/// HTTP request timeout) instead of taking memory and every core.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let turns = TURNS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let _turn = turns.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// A hash no password matches, verified for unknown emails so that they
/// take as long as known ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut password = [0u8; 32];
        rand::rng().fill_bytes(&mut password);
        hash_password(&format!("{password:?}")).unwrap_or_default()
    })
}

impl Engine {
    /// Creates a console account. The password's hash is computed off the
    /// request's task (about 20 ms of CPU); its `Ok` means it is durable.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        let email = normalise_email(&new.email)
            .ok_or_else(|| invalid("email", "is not an email address"))?;
        let chars = new.password.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(invalid(
                "password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if new.password.len() > MAX_PASSWORD_BYTES {
            return Err(invalid(
                "password",
                format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        match (new.role, new.tenant) {
            (Role::Admin, Some(_)) => {
                return Err(invalid("tenant_id", "an admin belongs to no tenant"));
            }
            (Role::Admin, None) => {}
            (_, None) => {
                return Err(invalid("tenant_id", "is required for this role"));
            }
            // A tenant another node created a moment ago may not have
            // reached this node's memory: the store has the last word.
            (_, Some(t))
                if !self.tenant_exists(t)
                    && !self
                        .store
                        .tenants()
                        .await?
                        .iter()
                        .any(|known| known.id == t) =>
            {
                return Err(Error::TenantNotFound);
            }
            (_, Some(_)) => {}
        }
        let password = new.password;
        let password_hash = hashing(move || hash_password(&password))
            .await
            .ok_or_else(|| invalid("password", "could not be hashed"))??;
        let user = User {
            id: UserId(uuid::Uuid::now_v7().as_u128()),
            email,
            password_hash,
            role: new.role,
            tenant: new.tenant,
            created_at: crate::now(),
            failed_signins: 0,
            locked_until: None,
        };
        match self.store.enqueue(Write::CreateUser(user.clone())).await {
            Ok(()) => {}
            // A conflict is the email's only when an account holds it.
            Err(maskline_store::Error::Conflict(_))
                if self.store.user_by_email(&user.email).await?.is_some() =>
            {
                return Err(Error::EmailTaken);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user = %user.id, role = user.role.as_str(), "console user created");
        Ok(user)
    }

    /// Starts a console session for `user` at `now`: the cookie's token,
    /// shown only here (the store keeps its hash). Its `Ok` means it is
    /// durable, so it works on every node.
    pub async fn open_session(&self, user: &User, now: UnixTime) -> Result<String> {
        let token = crate::tenants::new_key("mls");
        self.store
            .enqueue(Write::OpenSession(ConsoleSession {
                token_hash: crate::tenants::hash_key(&token),
                user: user.id,
                created_at: now,
                expires_at: now + SESSION_SECS,
            }))
            .await?;
        Ok(token)
    }

    /// The user a session token signs in at `now`: `None` for an unknown,
    /// ended or signed-out session.
    pub async fn session_user(&self, token: &str, now: UnixTime) -> Result<Option<User>> {
        let found = self
            .store
            .console_session(crate::tenants::hash_key(token))
            .await?;
        Ok(found
            .filter(|(session, _)| session.expires_at > now)
            .map(|(_, user)| user))
    }

    /// Signs a session out on every node.
    pub async fn close_session(&self, token: &str) -> Result<()> {
        self.store
            .enqueue(Write::CloseSession {
                token_hash: crate::tenants::hash_key(token),
            })
            .await?;
        Ok(())
    }

    /// Removes a console account and ends its sessions on every node:
    /// `tenant`'s own only, any for `None` (the admin).
    /// [`Error::UserNotFound`] if there is no such account there.
    pub async fn delete_user(&self, tenant: Option<TenantId>, user: UserId) -> Result<()> {
        match self.store.enqueue(Write::DeleteUser { user, tenant }).await {
            Err(maskline_store::Error::Conflict(_)) => Err(Error::UserNotFound),
            other => {
                other?;
                tracing::info!(%user, "console user removed");
                Ok(())
            }
        }
    }

    /// Console accounts, oldest first: `tenant`'s, or all for `None`.
    pub async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<User>> {
        Ok(self.store.users(tenant).await?)
    }

    /// Checks a sign-in at `now`, counting failures in the store. A refusal
    /// is answered [`REFUSAL_FLOOR`] after the attempt began, whatever
    /// refused it.
    pub async fn sign_in(&self, email: &str, password: &str, now: UnixTime) -> Result<SignIn> {
        let began = tokio::time::Instant::now();
        let outcome = self.check_sign_in(email, password, now).await?;
        if !matches!(outcome, SignIn::Accepted(_)) {
            tokio::time::sleep_until(began + REFUSAL_FLOOR).await;
        }
        Ok(outcome)
    }

    async fn check_sign_in(&self, email: &str, password: &str, now: UnixTime) -> Result<SignIn> {
        let user = match normalise_email(email) {
            Some(email) => self.store.user_by_email(&email).await?,
            None => None,
        };
        if let Some(until) = user
            .as_ref()
            .and_then(|u| u.locked_until)
            .filter(|&until| until > now)
        {
            return Ok(SignIn::Locked { until });
        }
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let matches = password.len() <= MAX_PASSWORD_BYTES
            && hashing(move || {
                // An unknown email costs the same check as a known one.
                let hash = hash.as_deref().unwrap_or_else(|| decoy_hash());
                password_matches(&password, hash)
            })
            .await
            .unwrap_or(false);
        let Some(user) = user else {
            return Ok(SignIn::Refused);
        };
        if matches {
            if user.failed_signins > 0 {
                self.store
                    .enqueue(Write::SignInSucceeded {
                        user: user.id,
                        at: now,
                    })
                    .await?;
            }
            return Ok(SignIn::Accepted(User {
                failed_signins: 0,
                ..user
            }));
        }
        // Counted by the store in the row, so that attempts made at once
        // (on this node or another) each count.
        self.store
            .enqueue(Write::SignInFailed {
                user: user.id,
                at: now,
                max: MAX_FAILED_SIGNINS,
                lockout_secs: LOCKOUT_SECS,
            })
            .await?;
        if user.failed_signins + 1 >= MAX_FAILED_SIGNINS {
            tracing::warn!(user = %user.id, "console user locked after {MAX_FAILED_SIGNINS} failed sign-ins");
        }
        Ok(SignIn::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalise_email("  Ops@Example.COM ").as_deref(),
            Some("ops@example.com")
        );
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@example",
            "ops@.example.com",
            "o ps@example.com",
            "ops@exa@mple.com",
            "ops@example.com.",
            "o\u{200b}ps@example.com",
            "ops@exam\u{ad}ple.com",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad}");
        }
        assert_eq!(
            normalise_email(&format!("{}@example.com", "a".repeat(250))),
            None
        );
    }

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(password_matches("correct horse battery", &a));
        assert!(!password_matches("correct horse batterz", &a));
        assert!(!password_matches("correct horse battery", "not a hash"));
        assert!(!password_matches("", decoy_hash()));
    }
}
