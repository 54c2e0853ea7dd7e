//! Portal links (SPEC §6, §11): an admin issues a single-use link that opens the console scoped
//! to one workspace with the role `viewer` or `operator`, so a SaaS can hand its customer a view
//! of their own hooks, runs and usage. The link carries a random token (only its hash is kept);
//! redeeming it marks it used once and for all, and a console session opened by it lasts until
//! the link expires or is revoked, which the console asks on every request
//! ([`Engine::portal_link_in_force`]).
//!
//! Also the two settings of embedding the console: the public address links start with
//! (`FLOWD_PUBLIC_URL`) and the sites that may frame the console
//! (`FLOWD_CONSOLE_FRAME_ANCESTORS`).

use std::fmt;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::core::duration::Duration;
use crate::core::workspace::{Access, Actor, Role, workspace_name_problem};
use crate::engine::audit::{self, Change};
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::portal_links::{self, NewPortalLink, PortalLink, Redeemed};
use crate::store::workspaces;

/// The shortest and longest life of a link, and the default.
pub const MIN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
pub const DEFAULT_TTL: Duration = Duration::from_secs(3_600);

/// Where portal links point and who may frame the console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalSettings {
    /// `FLOWD_PUBLIC_URL` without a trailing `/`; `None`: `http://<listen address>`.
    pub public_url: Option<String>,
    /// `FLOWD_CONSOLE_FRAME_ANCESTORS`: the origins that may frame the console; empty: none.
    pub frame_ancestors: Vec<String>,
}

impl PortalSettings {
    /// The public address as given: an absolute http(s) URL without query or fragment.
    pub fn parse_public_url(value: &str) -> Result<String, String> {
        let value = value.trim();
        let url = url::Url::parse(value)
            .map_err(|e| format!("`{value}` is not an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "`{value}` must be an http:// or https:// URL with a host"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{value}` must have no query and no fragment"));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    /// Space-separated CSP source expressions: origins (`https://app.example.com`, wildcards
    /// like `https://*.example.com`) or `'self'`. Anything that could end the directive or
    /// add another (`;`, `,`, quotes, control characters) is refused.
    pub fn parse_frame_ancestors(value: &str) -> Result<Vec<String>, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".:/*-_[]".contains(c);
        value
            .split_whitespace()
            .map(|source| {
                if source == "'self'" || (source.chars().all(allowed) && source.contains(':')) {
                    Ok(source.to_string())
                } else {
                    Err(format!(
                        "`{source}` is not an origin: write `https://app.example.com` (or \
                         `'self'`), several separated by spaces"
                    ))
                }
            })
            .collect()
    }

    /// Whether other sites may frame the console.
    pub fn framing_allowed(&self) -> bool {
        !self.frame_ancestors.is_empty()
    }
}

/// What a new link is for: the role it grants and how long it may wait to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalLinkSpec {
    pub role: Role,
    pub ttl: Duration,
}

impl PortalLinkSpec {
    /// The role (`viewer` or `operator`) and ttl (1m to 30d, default 1h) as given.
    pub fn parse(role: Option<&str>, ttl: Option<&str>) -> Result<PortalLinkSpec, PortalError> {
        let invalid =
            |field: &'static str, message: String| PortalError::Invalid { field, message };
        let role = match role.map(Role::parse) {
            Some(Some(role @ (Role::Viewer | Role::Operator))) => role,
            Some(_) => {
                return Err(invalid(
                    "role",
                    format!(
                        "`role` must be `viewer` or `operator`, got `{}`",
                        role.unwrap_or_default()
                    ),
                ));
            }
            None => {
                return Err(invalid(
                    "role",
                    "`role` is missing: `viewer` or `operator`".into(),
                ));
            }
        };
        let ttl = match ttl {
            None => DEFAULT_TTL,
            Some(text) => text
                .trim()
                .parse::<Duration>()
                .map_err(|e| invalid("ttl", format!("`ttl`: {e}")))?,
        };
        if ttl < MIN_TTL || ttl > MAX_TTL {
            return Err(invalid(
                "ttl",
                format!("`ttl` must be from {MIN_TTL} to {MAX_TTL}, got {ttl}"),
            ));
        }
        Ok(PortalLinkSpec { role, ttl })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A field of the request is wrong.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no workspace `{0}`")]
    UnknownWorkspace(String),
    #[error("workspace `{workspace}` has no portal link `{id}`")]
    UnknownLink { workspace: String, id: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The audit entry of a change to link `id` of `workspace`: recorded in that workspace.
fn link_change(action: AuditAction, workspace: &str, id: &str, detail: Value) -> Change {
    Change {
        action,
        target: id.to_owned(),
        workspace: workspace.to_owned(),
        detail,
    }
}

impl From<StoreError> for PortalError {
    fn from(e: StoreError) -> PortalError {
        PortalError::Engine(e.into())
    }
}

/// A link just issued: the stored row and its URL, which holds the token (shown once).
pub struct IssuedLink {
    pub link: PortalLink,
    pub url: String,
}

impl fmt::Debug for IssuedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedLink")
            .field("link", &self.link)
            .field("url", &"***")
            .finish()
    }
}

/// Why a link does not open the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    AlreadyUsed,
    Revoked,
}

impl Refusal {
    /// The sentence a person reads.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => "This link is not known: it is mistyped or was never issued.",
            Refusal::Expired => "This link has expired. Ask for a new one.",
            Refusal::AlreadyUsed => {
                "This link has already been used: a link opens the console once. Ask for a new one."
            }
            Refusal::Revoked => "This link was revoked. Ask for a new one.",
        }
    }
}

/// What a redeemed link grants a console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalGrant {
    pub link_id: String,
    pub workspace: String,
    pub role: Role,
    /// Unix milliseconds: the session ends then.
    pub expires_at: i64,
}

impl PortalGrant {
    /// The access of a session opened by this link: its workspace and role only.
    pub fn access(&self) -> Access {
        Access {
            workspace: self.workspace.clone(),
            role: self.role,
            all_workspaces: false,
            actor: Actor::PortalLink {
                id: self.link_id.clone(),
            },
        }
    }
}

impl Engine {
    /// Issues a link to `workspace`'s console for `spec.role`, valid for `spec.ttl`.
    pub async fn issue_portal_link(
        &self,
        access: &Access,
        workspace: &str,
        spec: PortalLinkSpec,
    ) -> Result<IssuedLink, PortalError> {
        self.check_workspace(access, workspace).await?;
        let now = self.runner().now_ms();
        let store = self.store();
        let txn = store.begin_write().await?;
        let (link, token) = portal_links::create(
            &txn,
            NewPortalLink {
                workspace: workspace.to_string(),
                role: spec.role.as_str().to_string(),
                expires_at: now + spec.ttl.as_millis() as i64,
                created_by: access.actor.to_string(),
            },
            now,
        )
        .await?;
        let detail = json!({"role": link.role, "expires_at": link.expires_at});
        let change = link_change(AuditAction::PortalLinkIssued, workspace, &link.id, detail);
        audit::record(&txn, store.backend(), access, change, now).await?;
        txn.commit().await.map_err(StoreError::from)?;
        let url = format!("{}/portal/{token}", self.portal_base_url());
        Ok(IssuedLink { link, url })
    }

    /// The links of `workspace`, newest first; never their tokens.
    pub async fn list_portal_links(
        &self,
        access: &Access,
        workspace: &str,
    ) -> Result<Vec<PortalLink>, PortalError> {
        self.check_workspace(access, workspace).await?;
        Ok(portal_links::list(self.store().reader(), workspace).await?)
    }

    /// Revokes link `id` of `workspace`: it opens nothing more, and the console sessions it
    /// opened end on their next request.
    pub async fn revoke_portal_link(
        &self,
        access: &Access,
        workspace: &str,
        id: &str,
    ) -> Result<(), PortalError> {
        self.check_workspace(access, workspace).await?;
        let now = self.runner().now_ms();
        let store = self.store();
        let txn = store.begin_write().await?;
        if portal_links::revoke(&txn, workspace, id, now).await? {
            let change = link_change(AuditAction::PortalLinkRevoked, workspace, id, json!({}));
            audit::record(&txn, store.backend(), access, change, now).await?;
            txn.commit().await.map_err(StoreError::from)?;
            Ok(())
        } else {
            Err(PortalError::UnknownLink {
                workspace: workspace.to_string(),
                id: id.to_string(),
            })
        }
    }

    /// Uses the link of `token` once: what it grants, or why it cannot be used.
    pub async fn redeem_portal_link(
        &self,
        token: &str,
    ) -> Result<Result<PortalGrant, Refusal>, EngineError> {
        let now = self.runner().now_ms();
        Ok(
            match portal_links::redeem(self.store().writer(), token, now).await? {
                Redeemed::Opened(link) => match Role::parse(&link.role) {
                    Some(role) => Ok(PortalGrant {
                        link_id: link.id,
                        workspace: link.workspace,
                        role,
                        expires_at: link.expires_at,
                    }),
                    // A role this version does not know opens nothing.
                    None => Err(Refusal::Unknown),
                },
                Redeemed::Unknown => Err(Refusal::Unknown),
                Redeemed::Expired => Err(Refusal::Expired),
                Redeemed::AlreadyUsed => Err(Refusal::AlreadyUsed),
                Redeemed::Revoked => Err(Refusal::Revoked),
            },
        )
    }

    /// Whether a session opened by link `id` may go on: the link is neither revoked nor
    /// expired. One read by primary key, so a revocation on any node counts at once.
    pub async fn portal_link_in_force(&self, id: &str) -> Result<bool, EngineError> {
        let now = self.runner().now_ms();
        let link = portal_links::get(self.store().reader(), id).await?;
        Ok(link.is_some_and(|l| l.revoked_at.is_none() && l.expires_at > now))
    }

    /// Where link `link` stands now: `revoked`, `expired`, `used` (its session may still be
    /// open) or `unused`.
    pub fn portal_link_state(&self, link: &PortalLink) -> &'static str {
        if link.revoked_at.is_some() {
            "revoked"
        } else if link.expires_at <= self.runner().now_ms() {
            "expired"
        } else if link.used_at.is_some() {
            "used"
        } else {
            "unused"
        }
    }

    /// The portal and framing settings.
    pub fn portal_settings(&self) -> &PortalSettings {
        &self.inner.config.portal
    }

    /// Tells the engine the address it listens on, for links when `FLOWD_PUBLIC_URL` is unset.
    pub fn set_listen_address(&self, addr: SocketAddr) {
        // Only the first address counts: a server listens on one.
        let _first = self.inner.listen_url.set(format!("http://{addr}"));
    }

    /// What portal URLs start with: `FLOWD_PUBLIC_URL`, else `http://<listen address>`.
    fn portal_base_url(&self) -> String {
        self.portal_settings()
            .public_url
            .clone()
            .or_else(|| self.inner.listen_url.get().cloned())
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_string())
    }

    /// The workspace must exist (read from the store, so one created a moment ago on another
    /// node counts) and be visible to `access`; otherwise it is unknown (404, revealing
    /// nothing).
    async fn check_workspace(&self, access: &Access, workspace: &str) -> Result<(), PortalError> {
        let unknown = || PortalError::UnknownWorkspace(workspace.to_string());
        if workspace_name_problem(workspace).is_some() || !access.sees(workspace) {
            return Err(unknown());
        }
        let store = self.store();
        if !workspaces::exists(store.reader(), store.backend(), workspace).await? {
            return Err(unknown());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(role: Option<&str>, ttl: Option<&str>) -> (&'static str, String) {
        match PortalLinkSpec::parse(role, ttl) {
            Err(PortalError::Invalid { field, message }) => (field, message),
            other => panic!("{role:?} {ttl:?} gave {other:?}"),
        }
    }

    #[test]
    fn a_spec_takes_viewer_or_operator_for_one_minute_to_thirty_days() {
        let spec = PortalLinkSpec::parse(Some("operator"), None).unwrap();
        assert_eq!((spec.role, spec.ttl), (Role::Operator, DEFAULT_TTL));
        assert_eq!(
            PortalLinkSpec::parse(Some("viewer"), Some("30d"))
                .unwrap()
                .ttl,
            MAX_TTL
        );
        assert_eq!(
            PortalLinkSpec::parse(Some("viewer"), Some("1m"))
                .unwrap()
                .ttl,
            MIN_TTL
        );
        for role in [
            Some("admin"),
            Some("editor"),
            Some("trigger"),
            Some("root"),
            None,
        ] {
            assert_eq!(problem(role, None).0, "role", "{role:?}");
        }
        for ttl in ["59s", "31d", "soon", ""] {
            let (field, message) = problem(Some("viewer"), Some(ttl));
            assert_eq!(field, "ttl", "{ttl}");
            assert!(message.contains("ttl"), "{message}");
        }
    }

    #[test]
    fn settings_take_urls_and_origins_and_refuse_what_could_break_out() {
        assert_eq!(
            PortalSettings::parse_public_url("https://flowd.example.com/").unwrap(),
            "https://flowd.example.com"
        );
        assert_eq!(
            PortalSettings::parse_public_url("https://example.com/flowd").unwrap(),
            "https://example.com/flowd"
        );
        for bad in [
            "flowd.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
        ] {
            assert!(PortalSettings::parse_public_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PortalSettings::parse_frame_ancestors(
                " https://app.example.com  'self' https://*.b.io "
            )
            .unwrap(),
            ["https://app.example.com", "'self'", "https://*.b.io"]
        );
        for bad in [
            "https://a;script-src *",
            "'none'",
            "https://a,https://b",
            "*",
        ] {
            assert!(PortalSettings::parse_frame_ancestors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grant_scopes_access_to_its_workspace_and_role() {
        let grant = PortalGrant {
            link_id: "l1".into(),
            workspace: "acme".into(),
            role: Role::Viewer,
            expires_at: 0,
        };
        let access = grant.access();
        assert!(access.sees("acme") && !access.sees("default"));
        assert_eq!(access.actor.to_string(), "portal:l1");
    }
}
