//! Workspaces and roles (SPEC §11): the vocabulary every layer shares.
//!
//! A workspace owns flows, runs, events, secrets, notifications, usage, quotas and keys. Flow ids
//! and webhook paths are unique per workspace, so inside flowd a flow is known by its *flow key*:
//! the bare id in `default` (so every key stored before workspaces stays what it was) and
//! `workspace/id` elsewhere. Neither a flow id nor a workspace name may contain `/`, so a key
//! splits back one way only. A webhook's key is its path in `default` and `@workspace/path`
//! elsewhere, which is also what follows `/hooks/` in its URL (a path never starts with `@`).

use std::fmt;

/// The workspace that always exists, and that everything made before workspaces belongs to.
pub const DEFAULT_WORKSPACE: &str = "default";

/// What a workspace name looks like (the same rule as flow ids).
pub const WORKSPACE_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Why `name` cannot name a workspace, if it cannot.
pub fn workspace_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 64 {
        None
    } else {
        Some(format!(
            "`{name}` is not a workspace name: lower-case letters, digits, `_` and `-`, starting \
             with a letter or digit, at most 64 characters"
        ))
    }
}

/// The flow key of flow `id` in `workspace`.
pub fn flow_key(workspace: &str, id: &str) -> String {
    if workspace == DEFAULT_WORKSPACE {
        id.to_owned()
    } else {
        format!("{workspace}/{id}")
    }
}

/// The workspace and the id of a flow key.
pub fn split_flow_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((DEFAULT_WORKSPACE, key))
}

/// The key of webhook `path` in `workspace`: what follows `/hooks/` in its URL.
pub fn hook_key(workspace: &str, path: &str) -> String {
    if workspace == DEFAULT_WORKSPACE {
        path.to_owned()
    } else {
        format!("@{workspace}/{path}")
    }
}

/// The workspace and the path of a webhook key (the part of a URL after `/hooks/`).
pub fn split_hook_key(key: &str) -> (&str, &str) {
    key.strip_prefix('@')
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or((DEFAULT_WORKSPACE, key))
}

/// What a key may do. Roles are cumulative in the order `viewer` < `operator` < `editor` <
/// `admin`; `trigger` is beside them: it starts runs and reads nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Trigger,
    Operator,
    Editor,
    Admin,
}

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read anything of the workspace.
    Read,
    /// Post events and run actions (start runs through the API).
    Trigger,
    /// Pause, resume, retry, replay, cancel.
    Operate,
    /// Change flows and secrets.
    Edit,
    /// Workspaces, keys, portal links, other workspaces.
    Administer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Trigger,
        Role::Operator,
        Role::Editor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Trigger => "trigger",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Editor => matches!(permission, Read | Trigger | Operate | Edit),
            Role::Operator => matches!(permission, Read | Trigger | Operate),
            Role::Viewer => matches!(permission, Read),
            Role::Trigger => matches!(permission, Trigger),
        }
    }

    /// The least role that has `permission`: what a 403 names.
    pub fn needed_for(permission: Permission) -> Role {
        match permission {
            Permission::Read => Role::Viewer,
            Permission::Trigger => Role::Trigger,
            Permission::Operate => Role::Operator,
            Permission::Edit => Role::Editor,
            Permission::Administer => Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks, and in which workspace with which role: made by the API from a key, by the console
/// from a session or a portal link, by the command line and the flow files as the local
/// administrator. Every engine operation that reads or changes something of a workspace takes
/// one; the audit log records its `actor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The workspace the request acts in (creations land here).
    pub workspace: String,
    /// An admin key that did not name a workspace: lists span every workspace.
    pub all_workspaces: bool,
    pub role: Role,
    pub actor: Actor,
}

impl Access {
    /// The local administrator: the command line, flow files, a server without keys.
    pub fn local() -> Access {
        Access {
            workspace: DEFAULT_WORKSPACE.to_owned(),
            all_workspaces: true,
            role: Role::Admin,
            actor: Actor::Local,
        }
    }

    /// Whether this access may see objects of `workspace`.
    pub fn sees(&self, workspace: &str) -> bool {
        self.all_workspaces || self.workspace == workspace
    }

    /// Whether the role allows `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }
}

/// Who made a change, as the audit log names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// An API key, by its id (never the key).
    Key { id: String },
    /// A console session opened by a portal link, by the link's id.
    PortalLink { id: String },
    /// The command line, a flow file, or a server that runs without keys.
    Local,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Key { id } => write!(f, "key:{id}"),
            Actor::PortalLink { id } => write!(f, "portal:{id}"),
            Actor::Local => f.write_str("local"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_of_default_are_bare_ids_and_split_back() {
        assert_eq!(flow_key("default", "guest"), "guest");
        assert_eq!(flow_key("acme", "guest"), "acme/guest");
        assert_eq!(split_flow_key("guest"), ("default", "guest"));
        assert_eq!(split_flow_key("acme/guest"), ("acme", "guest"));
    }

    #[test]
    fn hook_keys_of_default_are_bare_paths_and_split_back() {
        assert_eq!(hook_key("default", "crm/in"), "crm/in");
        assert_eq!(hook_key("acme", "crm/in"), "@acme/crm/in");
        assert_eq!(split_hook_key("crm/in"), ("default", "crm/in"));
        assert_eq!(split_hook_key("@acme/crm/in"), ("acme", "crm/in"));
    }

    #[test]
    fn roles_are_cumulative_and_trigger_reads_nothing() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Trigger, [false, true, false, false, false]),
            (Role::Operator, [true, true, true, false, false]),
            (Role::Editor, [true, true, true, true, false]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, allowed) in table {
            for (permission, want) in [Read, Trigger, Operate, Edit, Administer]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.allows(permission), want, "{role} {permission:?}");
            }
        }
        for permission in [Read, Trigger, Operate, Edit, Administer] {
            assert!(Role::needed_for(permission).allows(permission));
        }
    }

    #[test]
    fn workspace_names_follow_the_flow_id_rule() {
        for good in ["default", "acme", "a", "pos-12_b"] {
            assert_eq!(workspace_name_problem(good), None, "{good}");
        }
        for bad in ["", "Acme", "-a", "a/b", "@a", &"a".repeat(65)] {
            assert!(workspace_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn roles_parse_from_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
