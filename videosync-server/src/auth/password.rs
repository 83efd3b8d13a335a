//! Password hashing with Argon2id, on the blocking pool and bounded: each
//! hash costs tens of milliseconds of one core, so a burst of logins queues
//! for a permit instead of starving every other request.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes (hashing cost grows with length).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and checks passwords.
#[derive(Debug, Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of nothing anyone knows, checked against when a login names no
    /// account, so that answer takes as long as a wrong password.
    decoy: Arc<tokio::sync::OnceCell<String>>,
}

impl Passwords {
    /// Argon2id with `memory_kib` of memory and `iterations` passes, at
    /// most `concurrency` hashes at once (0: one per core).
    ///
    /// # Errors
    /// When the parameters are out of Argon2's range.
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> Result<Self, String> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| format!("Argon2 parameters m={memory_kib} t={iterations}: {e}"))?;
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        Ok(Passwords {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            decoy: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Checks a new password against the rules.
    ///
    /// # Errors
    /// 422 naming the rule.
    pub fn check_rules(password: &str) -> ApiResult<()> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ApiError::invalid(format!(
                "a password must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::invalid(format!(
                "a password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// The PHC string of `password` with a fresh salt.
    ///
    /// # Errors
    /// 500 when hashing fails (it does not for valid parameters).
    pub async fn hash(&self, password: &str) -> ApiResult<String> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(ApiError::internal)
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Whether `password` matches `hash` (a hash made with other parameters
    /// still checks: they are in the PHC string).
    ///
    /// # Errors
    /// 500 when the task fails.
    pub async fn verify(&self, password: &str, hash: &str) -> ApiResult<bool> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let params = self.params.clone();
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Self::argon2(params)
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(ApiError::internal)
    }

    /// Spends the time of one check, for a login that names no account.
    ///
    /// # Errors
    /// 500 when hashing fails.
    pub async fn waste_one_check(&self, password: &str) -> ApiResult<()> {
        let decoy = self
            .decoy
            .get_or_try_init(|| self.hash("not anyone's password, only a decoy"))
            .await?;
        self.verify(password, decoy).await.map(|_| ())
    }

    /// The parameters, for reports.
    pub fn describe(&self) -> String {
        format!(
            "Argon2id m={} KiB t={} p={}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_check_and_differ() {
        let p = Passwords::new(8, 1, 2).unwrap();
        let a = p.hash("correct horse").await.unwrap();
        let b = p.hash("correct horse").await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(p.verify("correct horse", &a).await.unwrap());
        assert!(!p.verify("correct horsE", &a).await.unwrap());
        assert!(!p.verify("x", "not a hash").await.unwrap());
        p.waste_one_check("anything").await.unwrap();
        assert!(Passwords::check_rules("short").is_err());
        assert!(Passwords::check_rules(&"x".repeat(2000)).is_err());
        assert!(Passwords::check_rules("long enough").is_ok());
    }
}
