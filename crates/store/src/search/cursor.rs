//! Paging cursors: where a page ends, in the search's sort order, signed so that a client
//! cannot forge one (and so jump past rows it could not otherwise reach, or make the server
//! run a comparison it did not plan for).
//!
//! A cursor holds the sort values and the key of the row it is relative to, and whether the
//! page asked for comes after that row (`next`) or before it (`previous`). Its text is
//! `base64url(payload) "." base64url(mac)`, the MAC being HMAC-SHA256, cut to 128 bits,
//! over the query it belongs to (type and canonical parameters) and the payload: a cursor
//! works only with the search that issued it. The key is shared by every server on the
//! database (table `server_secrets`), so cursors survive restarts and move between
//! replicas.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;

use crate::StoreError;

/// The name of the key in `server_secrets`.
const KEY_NAME: &str = "search-cursor";
/// MAC bytes kept.
const MAC_LEN: usize = 16;

/// A position in a search's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    /// The page asked for ends just before this row (`previous`), rather than starting
    /// just after it (`next`).
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) before: bool,
    /// The row's sort values, as PostgreSQL prints them (`None`: no value).
    #[serde(rename = "v", default, skip_serializing_if = "Vec::is_empty")]
    pub(super) values: Vec<Option<String>>,
    /// The row's key, the last sort key.
    #[serde(rename = "k")]
    pub(super) key: i64,
}

/// The secret cursors are signed with.
#[derive(Clone)]
pub(super) struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// The database's key, created by the first server that asks.
    pub(super) async fn load(pool: &PgPool) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| sqlx::Error::Protocol(format!("no random bytes: {e}")))?;
        sqlx::query(
            "insert into server_secrets (name, value) values ($1, $2) on conflict (name) do nothing",
        )
        .bind(KEY_NAME)
        .bind(fresh.as_slice())
        .execute(pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("select value from server_secrets where name = $1")
                .bind(KEY_NAME)
                .fetch_one(pool)
                .await?;
        let key = stored
            .try_into()
            .map_err(|_| sqlx::Error::Protocol("the cursor key is not 32 bytes".into()))?;
        Ok(CursorKey(key))
    }

    /// The MAC of `payload` for the search `scope`, before truncation.
    fn hmac(&self, scope: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The text of `cursor` for the search `scope`.
    pub(super) fn seal(&self, scope: &str, cursor: &Cursor) -> String {
        let payload = serde_json::to_vec(cursor).unwrap_or_default();
        let mac = self.hmac(scope, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&mac[..MAC_LEN])
        )
    }

    /// The cursor `text` holds, when this key signed it for the search `scope`.
    pub(super) fn open(&self, scope: &str, text: &str) -> Option<Cursor> {
        let (payload, mac) = text.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if mac.len() != MAC_LEN {
            return None;
        }
        // In constant time.
        self.hmac(scope, &payload)
            .verify_truncated_left(&mac)
            .ok()?;
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            before: false,
            values: vec![Some("2020-01-01 00:00:00+00".into()), None],
            key: 42,
        }
    }

    #[test]
    fn a_sealed_cursor_opens_for_its_search_only() {
        let key = CursorKey([7; 32]);
        let text = key.seal("Patient?family=x", &cursor());
        assert_eq!(key.open("Patient?family=x", &text), Some(cursor()));
        assert_eq!(key.open("Patient?family=y", &text), None);
        assert_eq!(CursorKey([8; 32]).open("Patient?family=x", &text), None);
    }

    #[test]
    fn a_forged_or_damaged_cursor_does_not_open() {
        let key = CursorKey([7; 32]);
        let text = key.seal("s", &cursor());
        let (payload, mac) = text.split_once('.').unwrap_or_default();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"k":1}"#);
        assert_eq!(key.open("s", &format!("{forged}.{mac}")), None);
        assert_eq!(key.open("s", payload), None);
        assert_eq!(key.open("s", &format!("{payload}.")), None);
        assert_eq!(key.open("s", "not a cursor"), None);
        assert_eq!(key.open("s", &format!("{payload}.{}", &mac[1..])), None);
    }
}
