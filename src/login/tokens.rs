//! The session use cases: refresh, authenticate, logout (by access or refresh token, one device or all) and the
//! device list.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use super::ports::{
    AccessTokens, Clock, Device, EventKind, EventLog, NewSession, RefreshLogout, Revocation, Rotation, Scope, Session,
    SessionInfo, Sessions, StoreError,
};
use super::service::{AuthError, Login, LoginGrant, Ports};
use super::ClientIp;
use crate::domain::{Token, TokenDigest, TokenError};

/// A request carrying a live token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: TokenDigest,
    pub session: Session,
}

/// Deletes every token at once and returns those whose deletion failed, with the error.
async fn delete_all<'a, T: AccessTokens>(
    store: &T,
    tokens: impl Iterator<Item = &'a TokenDigest>,
) -> Vec<(&'a TokenDigest, StoreError)> {
    type Deletion<'f> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'f>>;
    let mut pending: Vec<(&TokenDigest, Deletion<'_>)> =
        tokens.map(|token| (token, Box::pin(store.delete(token)) as Deletion<'_>)).collect();
    let mut failed = Vec::new();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(token, deletion)| match deletion.as_mut().poll(cx) {
            Poll::Ready(outcome) => {
                if let Err(e) = outcome {
                    failed.push((*token, e));
                }
                false
            }
            Poll::Pending => true,
        });
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    failed
}

impl<P: Ports> Login<P> {
    /// Deletes access tokens from KV, all at once; every deletion is attempted (and a failed one once more) before
    /// a failure is reported.
    pub(super) async fn forget(&self, tokens: &[TokenDigest]) -> Result<(), StoreError> {
        let failed = delete_all(&self.access, tokens.iter()).await;
        let failed: Vec<&TokenDigest> = failed.into_iter().map(|(token, _)| token).collect();
        match delete_all(&self.access, failed.into_iter()).await.pop() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    /// Exchanges a refresh token for a new pair, in one round trip. The presented token dies (rotation); presenting
    /// a token that was already rotated out revokes its whole session, since either its owner or a thief holds a
    /// copy.
    pub async fn refresh(
        &self,
        presented: &Token,
        client: &ClientIp,
        device: &Device,
    ) -> Result<LoginGrant, AuthError> {
        let now = self.clock.now();
        let digest = presented.digest();
        let (access, refresh, next) = self.new_tokens(now, device)?;
        let rotation = match self.store.rotate(&digest, &next, client, now, &self.policy).await {
            Ok(rotation) => rotation,
            Err(e) => {
                // It may have committed with its answer lost: undone, so presenting the token again is no reuse.
                let _ = self.store.unrotate(&digest, &next).await;
                return Err(e.into());
            }
        };
        match rotation {
            Rotation::Rotated { session_id, user, previous_access, expires_at } => {
                let snapshot = self.snapshot(session_id, &user, &next, now);
                if let Err(e) = self.access.put(&next.access, &snapshot, self.access_ttl()).await {
                    let _ = self.store.unrotate(&digest, &next).await;
                    return Err(e.into());
                }
                // Written after the step that made it live: checked again after the answer (see `settle`).
                self.events.issued(&next.access);
                if let Some(previous) = previous_access {
                    // The replaced token dies at once where it can; it expires soon anyway, and its session lives on.
                    let _ = self.access.delete(&previous).await;
                }
                let next = NewSession { refresh_expires_at: expires_at, ..next };
                let tokens = self.pair(session_id, access, refresh, &next, now);
                self.record(EventKind::Refresh, Some(user.id), None, Some(format!("session {session_id}")));
                Ok(LoginGrant { user: *user, tokens })
            }
            Rotation::Reused { session_id, user_id, access } => {
                self.forget(&access).await?;
                let detail = format!("session {session_id} revoked");
                self.record(EventKind::RefreshReused, Some(user_id), None, Some(detail));
                Err(AuthError::Invalid)
            }
            Rotation::AccessLost { session_id, user_id, access } => {
                self.forget(&access).await?;
                let detail = format!("session {session_id}: account may no longer log in");
                self.record(EventKind::Revoked, Some(user_id), None, Some(detail));
                Err(AuthError::Invalid)
            }
            Rotation::Invalid => Err(AuthError::Invalid),
            Rotation::Refused(refusal) => {
                self.record(EventKind::Refused, None, None, Some(refusal.describe("refresh")));
                Err(AuthError::Refused(refusal))
            }
        }
    }

    /// Resolves the `Authorization` header to a live session: exactly one KV read, no D1.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, AuthError> {
        let token = Token::from_authorization(authorization).map_err(|e| match e {
            TokenError::Missing => AuthError::Missing,
            TokenError::Malformed => AuthError::Invalid,
        })?;
        let digest = token.digest();
        let now = self.clock.now();
        let session = self.access.get(&digest).await?.filter(|s| now < s.expires_at && s.user.may_log_in());
        match session {
            Some(session) => Ok(Authenticated { token: digest, session }),
            None => Err(AuthError::Invalid),
        }
    }

    /// Ends sessions of the authenticated user: their rows are revoked in D1, so their refresh tokens die, and every
    /// access token D1 lists for them leaves KV. Returns the sessions this call ended.
    async fn end_sessions(
        &self,
        auth: &Authenticated,
        scope: Scope,
        detail: Option<String>,
    ) -> Result<Vec<i64>, AuthError> {
        let user_id = auth.session.user.id;
        let Revocation { ended, access } = self.store.revoke(user_id, scope, self.clock.now(), "logout").await?;
        if !ended.is_empty() {
            self.record(EventKind::Logout, Some(user_id), None, detail);
        }
        self.forget(&access).await?;
        Ok(ended)
    }

    /// Kills the session's access tokens at once and its refresh token with it.
    pub async fn logout(&self, auth: &Authenticated) -> Result<(), AuthError> {
        self.end_sessions(auth, Scope::One(auth.session.session_id), None).await?;
        // The presented token goes in any case (a value written before the session's tokens were listed in D1).
        self.access.delete(&auth.token).await?;
        Ok(())
    }

    /// Ends the session a refresh token (current, or rotated out) belongs to: an app whose access token has expired
    /// can still log out. Presenting it again answers the same and deletes again whatever may have been left in KV.
    pub async fn logout_by_refresh(&self, presented: &Token, client: &ClientIp) -> Result<(), AuthError> {
        let now = self.clock.now();
        match self.store.end_by_refresh(&presented.digest(), client, now, &self.policy).await? {
            RefreshLogout::Ended { session_id, user_id, ended, access } => {
                if ended {
                    self.record(EventKind::Logout, Some(user_id), None, Some(format!("session {session_id}")));
                }
                self.forget(&access).await?;
                Ok(())
            }
            RefreshLogout::Unknown => Err(AuthError::Invalid),
            RefreshLogout::Refused(refusal) => {
                self.record(EventKind::Refused, None, None, Some(refusal.describe("logout")));
                Err(AuthError::Refused(refusal))
            }
        }
    }

    /// Ends every session of the user, on every device; returns how many.
    pub async fn logout_all(&self, auth: &Authenticated) -> Result<usize, AuthError> {
        Ok(self.end_sessions(auth, Scope::All, Some("all".into())).await?.len())
    }

    /// Ends one of the user's own sessions (e.g. a lost phone); `false` when the user has no such live session.
    pub async fn revoke_session(&self, auth: &Authenticated, session_id: i64) -> Result<bool, AuthError> {
        let detail = Some(format!("session {session_id}"));
        Ok(!self.end_sessions(auth, Scope::One(session_id), detail).await?.is_empty())
    }

    /// The user's live sessions (devices).
    pub async fn list_sessions(&self, auth: &Authenticated) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self.store.list(auth.session.user.id, self.clock.now()).await?)
    }
}
