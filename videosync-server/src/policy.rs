//! The domain rules of who may see and do what, as plain functions of
//! roles, the permission matrix and visibility. Handlers ask these and
//! never decide themselves; the tests below check them as tables.
//!
//! - A channel is *visible* to anyone when public or unlisted, and to its
//!   members and instance administrators when private. What is not visible
//!   answers 404, exactly as if it did not exist.
//! - Inside a visible channel, what a caller may do is the permission
//!   matrix's row for their role. Non-members may do nothing but watch;
//!   guests (where the channel allows them) act as viewers for watching
//!   together and chat, never for anything that needs an account; banned
//!   users may do nothing. Instance administrators may do everything.
//! - Acting on another member (kick, ban, change role) needs the
//!   permission and a role that outranks theirs; the owner cannot be
//!   removed, banned or demoted.

use videosync_core::db::{Channel, Permission, PermissionMatrix, Role, Visibility};

use crate::error::{ApiError, ApiResult};

/// Who is asking, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Who {
    /// No token.
    Anonymous,
    /// A guest token.
    Guest,
    /// A user, and whether they administer the instance.
    User {
        /// Instance administrator.
        admin: bool,
    },
}

/// What a caller is in one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May see the channel at all (else: 404).
    pub visible: bool,
    /// Their membership role.
    pub role: Option<Role>,
    /// Banned from the channel.
    pub banned: bool,
    /// Instance administrator.
    pub admin: bool,
    /// A guest the channel lets in.
    pub guest: bool,
    /// Nobody signed in (refusals say 401: sign in first).
    pub anonymous: bool,
}

/// Permissions a guest may have (as a viewer): nothing that needs an
/// account.
const GUEST_MAY: &[Permission] = &[
    Permission::Chat,
    Permission::ControlPlayback,
    Permission::ManageQueue,
];

/// The caller's access to `channel`, given their membership role and
/// whether they are banned.
pub fn access(channel: &Channel, who: Who, role: Option<Role>, banned: bool) -> Access {
    let admin = matches!(who, Who::User { admin: true });
    let role = if banned { None } else { role };
    let visible = admin
        || role.is_some()
        || matches!(
            channel.visibility,
            Visibility::Public | Visibility::Unlisted
        );
    Access {
        visible,
        role,
        banned,
        admin,
        guest: who == Who::Guest
            && channel.allow_guests
            && channel.visibility != Visibility::Private,
        anonymous: who == Who::Anonymous,
    }
}

impl Access {
    /// Whether they may do `permission`.
    pub fn allows(&self, matrix: &PermissionMatrix, permission: Permission) -> bool {
        if !self.visible || self.banned {
            return false;
        }
        if self.admin {
            return true;
        }
        match self.role {
            Some(role) => matrix.allows(role, permission),
            None if self.guest => {
                GUEST_MAY.contains(&permission) && matrix.allows(Role::Viewer, permission)
            }
            None => false,
        }
    }

    /// 404 unless visible.
    ///
    /// # Errors
    /// 404 naming `what`.
    pub fn see(&self, what: &str) -> ApiResult<()> {
        if self.visible {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("{what} not found")))
        }
    }

    /// 404 unless visible, 403 unless allowed `permission`.
    ///
    /// # Errors
    /// 404 or 403.
    pub fn require(
        &self,
        matrix: &PermissionMatrix,
        permission: Permission,
        what: &str,
    ) -> ApiResult<()> {
        self.see(what)?;
        if self.allows(matrix, permission) {
            Ok(())
        } else if self.anonymous {
            Err(ApiError::unauthenticated("sign in first"))
        } else if self.banned {
            Err(ApiError::banned())
        } else {
            Err(ApiError::forbidden(format!(
                "you may not {} in this channel",
                permission_phrase(permission)
            )))
        }
    }

    /// The refusal of something they may not do: 401 for nobody signed in
    /// (they should sign in), else 403 with `message`.
    pub fn refuse(&self, message: &str) -> ApiError {
        if self.anonymous {
            ApiError::unauthenticated("sign in first")
        } else {
            ApiError::forbidden(message)
        }
    }

    /// Whether they may act on a member who has `target` (kick, ban,
    /// re-role): they need `permission` and must outrank the target;
    /// nobody acts on the owner.
    pub fn may_act_on(
        &self,
        matrix: &PermissionMatrix,
        permission: Permission,
        target: Option<Role>,
    ) -> bool {
        if target == Some(Role::Owner) || !self.allows(matrix, permission) {
            return false;
        }
        if self.admin {
            return true;
        }
        match (self.role, target) {
            (Some(me), Some(them)) => me.outranks(them),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether they may hand out `role` (in an invite or a role change):
    /// never owner, and only below their own role.
    pub fn may_grant(&self, role: Role) -> bool {
        role != Role::Owner && (self.admin || self.role.is_some_and(|me| me.outranks(role)))
    }

    /// Whether they may change the permission matrix row of `role`: the
    /// owner (or an instance admin), never the owner's row.
    pub fn may_edit_matrix(&self, role: Role) -> bool {
        role != Role::Owner && self.visible && (self.admin || self.role == Some(Role::Owner))
    }

    /// Whether they see everything in the channel (members), or only
    /// finished videos (everyone else).
    pub fn sees_unfinished(&self) -> bool {
        self.admin || self.role.is_some()
    }
}

/// The words for a permission in messages.
pub fn permission_phrase(p: Permission) -> &'static str {
    match p {
        Permission::ControlPlayback => "control playback",
        Permission::ManageQueue => "manage the queue",
        Permission::Upload => "upload",
        Permission::Chat => "chat",
        Permission::ModerateChat => "moderate chat",
        Permission::Invite => "invite",
        Permission::KickBan => "kick or ban",
        Permission::EditChannel => "edit the channel",
    }
}

/// A display name as sent (1 to 64 characters, no control characters,
/// not all white space) without the white space around it. The rules apply
/// to the name as sent, as the OpenAPI document states them.
///
/// # Errors
/// 422 naming the rule.
pub fn trimmed_display_name(name: &str) -> ApiResult<&str> {
    check_display_name(name)?;
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(
            "a display name must not be only white space",
        ));
    }
    Ok(trimmed)
}

/// Checks a display name: 1 to 64 characters, no control characters.
///
/// # Errors
/// 422 naming the rule.
pub fn check_display_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if !(1..=64).contains(&n) || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "a display name must be 1 to 64 characters, without control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use videosync_core::{ChannelId, Timestamp, UserId};

    fn channel(visibility: Visibility, allow_guests: bool) -> Channel {
        Channel {
            id: ChannelId::new(),
            name: "c".into(),
            description: String::new(),
            owner_id: UserId::new(),
            visibility,
            allow_guests,
            settings: serde_json::json!({}),
            version: 1,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    /// The callers of the matrix: (label, who, role, banned).
    const CALLERS: &[(&str, Who, Option<Role>, bool)] = &[
        ("anonymous", Who::Anonymous, None, false),
        ("guest", Who::Guest, None, false),
        ("non-member", Who::User { admin: false }, None, false),
        (
            "viewer",
            Who::User { admin: false },
            Some(Role::Viewer),
            false,
        ),
        (
            "moderator",
            Who::User { admin: false },
            Some(Role::Moderator),
            false,
        ),
        (
            "admin",
            Who::User { admin: false },
            Some(Role::Admin),
            false,
        ),
        (
            "owner",
            Who::User { admin: false },
            Some(Role::Owner),
            false,
        ),
        ("instance admin", Who::User { admin: true }, None, false),
        ("banned", Who::User { admin: false }, None, true),
    ];

    /// Visibility of a channel, per caller, per channel visibility.
    #[test]
    fn who_sees_what() {
        let expected: &[(&str, [bool; 3])] = &[
            // public, unlisted, private
            ("anonymous", [true, true, false]),
            ("guest", [true, true, false]),
            ("non-member", [true, true, false]),
            ("viewer", [true, true, true]),
            ("moderator", [true, true, true]),
            ("admin", [true, true, true]),
            ("owner", [true, true, true]),
            ("instance admin", [true, true, true]),
            ("banned", [true, true, false]),
        ];
        for ((label, who, role, banned), (l2, row)) in CALLERS.iter().zip(expected) {
            assert_eq!(label, l2);
            for (v, want) in [
                Visibility::Public,
                Visibility::Unlisted,
                Visibility::Private,
            ]
            .into_iter()
            .zip(row)
            {
                let a = access(&channel(v, true), *who, *role, *banned);
                assert_eq!(a.visible, *want, "{label} in {v}");
            }
        }
    }

    /// What each caller may do by default in a public channel with guests.
    #[test]
    fn default_permissions_by_caller() {
        use Permission::*;
        let all = [
            ControlPlayback,
            ManageQueue,
            Upload,
            Chat,
            ModerateChat,
            Invite,
            KickBan,
            EditChannel,
        ];
        let expected: &[(&str, &[Permission])] = &[
            ("anonymous", &[]),
            ("guest", &[Chat]),
            ("non-member", &[]),
            ("viewer", &[Chat]),
            (
                "moderator",
                &[
                    ControlPlayback,
                    ManageQueue,
                    Upload,
                    Chat,
                    ModerateChat,
                    Invite,
                    KickBan,
                ],
            ),
            ("admin", &all),
            ("owner", &all),
            ("instance admin", &all),
            ("banned", &[]),
        ];
        let m = PermissionMatrix::default();
        for ((label, who, role, banned), (_, allowed)) in CALLERS.iter().zip(expected) {
            let a = access(&channel(Visibility::Public, true), *who, *role, *banned);
            for p in all {
                assert_eq!(a.allows(&m, p), allowed.contains(&p), "{label} {p}");
            }
        }
    }

    #[test]
    fn guests_follow_the_channel_and_the_viewer_row() {
        let mut m = PermissionMatrix::default();
        let no_guests = access(&channel(Visibility::Public, false), Who::Guest, None, false);
        assert!(!no_guests.allows(&m, Permission::Chat));
        let private = access(&channel(Visibility::Private, true), Who::Guest, None, false);
        assert!(!private.visible);
        let g = access(&channel(Visibility::Public, true), Who::Guest, None, false);
        m.overrides
            .entry(Role::Viewer)
            .or_default()
            .insert(Permission::ControlPlayback, true);
        m.overrides
            .entry(Role::Viewer)
            .or_default()
            .insert(Permission::Upload, true);
        assert!(g.allows(&m, Permission::ControlPlayback));
        assert!(
            !g.allows(&m, Permission::Upload),
            "uploading needs an account"
        );
        m.overrides
            .entry(Role::Viewer)
            .or_default()
            .insert(Permission::Chat, false);
        assert!(!g.allows(&m, Permission::Chat));
    }

    #[test]
    fn acting_on_members_needs_rank() {
        let m = PermissionMatrix::default();
        let c = channel(Visibility::Public, false);
        let user = Who::User { admin: false };
        let moderator = access(&c, user, Some(Role::Moderator), false);
        let admin = access(&c, user, Some(Role::Admin), false);
        let instance = access(&c, Who::User { admin: true }, None, false);
        let kb = Permission::KickBan;
        assert!(moderator.may_act_on(&m, kb, Some(Role::Viewer)));
        assert!(moderator.may_act_on(&m, kb, None), "ban a non-member");
        assert!(!moderator.may_act_on(&m, kb, Some(Role::Moderator)));
        assert!(!moderator.may_act_on(&m, kb, Some(Role::Admin)));
        assert!(admin.may_act_on(&m, kb, Some(Role::Moderator)));
        assert!(!admin.may_act_on(&m, kb, Some(Role::Owner)));
        assert!(instance.may_act_on(&m, kb, Some(Role::Admin)));
        assert!(!instance.may_act_on(&m, kb, Some(Role::Owner)));
        let viewer = access(&c, user, Some(Role::Viewer), false);
        assert!(!viewer.may_act_on(&m, kb, None));
        assert!(moderator.may_grant(Role::Viewer));
        assert!(!moderator.may_grant(Role::Moderator));
        assert!(!access(&c, user, Some(Role::Owner), false).may_grant(Role::Owner));
        assert!(access(&c, user, Some(Role::Owner), false).may_edit_matrix(Role::Admin));
        assert!(!admin.may_edit_matrix(Role::Viewer));
        assert!(!instance.may_edit_matrix(Role::Owner));
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("Ada").is_ok());
        assert!(check_display_name("").is_err());
        assert!(check_display_name("a\u{7}b").is_err());
        assert!(check_display_name(&"é".repeat(65)).is_err());
    }
}
