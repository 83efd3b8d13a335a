//! Shapes shared by several capabilities: pages, people, timestamps.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use videosync_core::db::User;
use videosync_core::page::{Cursor, Page, PageRequest};
use videosync_core::Timestamp;

use crate::error::{ApiError, ApiResult};

/// RFC 3339 text of a timestamp (UTC, milliseconds).
pub fn rfc3339(t: Timestamp) -> String {
    let nanos = i128::from(t.as_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `?cursor=&limit=` of a listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// How many at most (1 to 200; default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl PageParams {
    /// The core's page request.
    ///
    /// # Errors
    /// 422 for a cursor that is not one of ours or a limit out of range.
    pub fn request(&self) -> ApiResult<PageRequest> {
        let cursor = match &self.cursor {
            Some(c) if !c.is_empty() => Some(
                c.parse::<Cursor>()
                    .map_err(|_| ApiError::invalid("the cursor is not one this server gave"))?,
            ),
            _ => None,
        };
        let limit = match self.limit {
            Some(l) if (1..=200).contains(&l) => Some(l as usize),
            Some(_) => return Err(ApiError::invalid("limit must be 1 to 200")),
            None => None,
        };
        Ok(PageRequest { cursor, limit })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PageOf<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> PageOf<T> {
    /// A page of views.
    pub fn from_page<U>(page: Page<U>, view: impl FnMut(U) -> T) -> Self {
        let next = page.next.as_ref().map(ToString::to_string);
        PageOf {
            items: page.items.into_iter().map(view).collect(),
            next,
        }
    }
}

/// A person, as others see them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonView {
    /// User id.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name shown.
    pub display_name: String,
}

impl From<&User> for PersonView {
    fn from(u: &User) -> Self {
        PersonView {
            id: u.id.to_string(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

/// Reads an optional whole number that the JSON spells `7` or `7.0`: JSON
/// Schema's `integer` admits both, so a client whose numbers are all
/// floats is not refused for it. Anything else (a fraction, a negative, a
/// string) is the usual 422.
///
/// # Errors
/// When the value is not a whole number that fits `T`.
pub fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    // Past 2^53 a float no longer spells one whole number.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
            .and_then(|f| format!("{f:.0}").parse().ok())
    });
    let value =
        whole.ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of 0 or more")))?;
    T::try_from(value)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

/// [`whole_number`] for a field that must be there.
///
/// # Errors
/// When the value is missing or not a whole number that fits `T`.
pub fn required_whole_number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    whole_number(d)?.ok_or_else(|| D::Error::custom("a whole number is required"))
}

/// Schema helpers for the core's enums (the core knows nothing of OpenAPI).
pub mod schema {
    use utoipa::openapi::schema::{
        AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
    };
    use utoipa::openapi::RefOr;

    fn tag_list(types: SchemaType) -> RefOr<Schema> {
        let tag = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .min_length(Some(1))
            .max_length(Some(40))
            .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F]*$"));
        ArrayBuilder::new()
            .schema_type(types)
            .items(tag)
            .max_items(Some(20))
            .description(Some(
                "Up to 20 tags of 1 to 40 characters, no control characters.",
            ))
            .into()
    }

    /// A video's tags.
    pub fn tags() -> RefOr<Schema> {
        tag_list(SchemaType::new(Type::Array))
    }

    /// A video's tags, or `null` for no change.
    pub fn tags_or_null() -> RefOr<Schema> {
        tag_list(SchemaType::from_iter([Type::Array, Type::Null]))
    }

    /// A role to give, or `null` for the default.
    pub fn given_role_or_null() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .enum_values(Some([
                serde_json::Value::from("admin"),
                serde_json::Value::from("moderator"),
                serde_json::Value::from("viewer"),
                serde_json::Value::Null,
            ]))
            .description(Some(
                "A role to give (a channel has one owner); null or absent: viewer.",
            ))
            .into()
    }

    /// A channel's settings in a request: a JSON object (at most 16 KiB)
    /// whose keys the rooms read are checked, the others kept as they are
    /// for clients; `null` or absent: none (on creation) or no change.
    pub fn channel_settings_or_null() -> RefOr<Schema> {
        use crate::realtime::settings as s;
        let whole = |min: u64, max: u64, what: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Integer))
                .minimum(Some(min))
                .maximum(Some(max))
                .description(Some(what))
        };
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .property(
                s::SLOW_MODE_KEY,
                whole(0, s::MAX_SLOW_MODE_SECONDS, "Seconds between two chat messages of a member (moderators exempt); 0: off."),
            )
            .property(
                s::MAX_MESSAGE_KEY,
                whole(1, videosync_sync::protocol::MAX_CHAT_CHARS as u64, "The longest chat message, in characters."),
            )
            .property(
                s::BEHIND_KEY,
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(["wait", "leave", "skip"]))
                    .description(Some("What the room does when a member's player falls behind.")),
            )
            .property(
                s::WAIT_TIMEOUT_KEY,
                whole(1, s::MAX_WAIT_TIMEOUT_SECONDS, "How long the group waits for one member (behind = wait), seconds."),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some(
                "Settings: the keys the rooms read are checked (a bad value is a 422 naming it); other keys are kept for clients. At most 16 KiB.",
            ))
            .into()
    }

    fn text_enum(values: &[&str], description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(values.iter().copied()))
            .description(Some(description))
            .into()
    }

    /// A channel role.
    pub fn role() -> RefOr<Schema> {
        text_enum(
            &["owner", "admin", "moderator", "viewer"],
            "A member's role, from most to least powerful.",
        )
    }

    /// A role one can give (not owner).
    pub fn given_role() -> RefOr<Schema> {
        text_enum(
            &["admin", "moderator", "viewer"],
            "A role to give (a channel has one owner).",
        )
    }

    /// Channel visibility.
    pub fn visibility() -> RefOr<Schema> {
        text_enum(
            &["public", "unlisted", "private"],
            "public: listed, anyone may watch; unlisted: anyone with the link; private: members only.",
        )
    }

    /// A channel permission.
    pub fn permission() -> RefOr<Schema> {
        text_enum(
            &[
                "control_playback",
                "manage_queue",
                "upload",
                "chat",
                "moderate_chat",
                "invite",
                "kick_ban",
                "edit_channel",
            ],
            "Something a member may be allowed to do.",
        )
    }

    /// A video's processing status.
    pub fn status() -> RefOr<Schema> {
        text_enum(
            &["pending", "processing", "ready", "failed"],
            "Where the video is in processing.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn page_params_are_checked() {
        let p = PageParams {
            cursor: Some("zz".into()),
            limit: None,
        };
        assert_eq!(p.request().unwrap_err().code, "invalid_input");
        let p = PageParams {
            cursor: None,
            limit: Some(0),
        };
        assert!(p.request().is_err());
        let p = PageParams {
            cursor: Some(String::new()),
            limit: Some(200),
        };
        assert_eq!(p.request().unwrap().limit, Some(200));
    }
}
