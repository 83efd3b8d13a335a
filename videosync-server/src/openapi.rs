//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/api/v1/openapi.json`.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "videosync",
        description = "Shared video: accounts, channels with roles, videos and search. \
                       Every error answers with one JSON shape, `{\"error\": {\"code\", \"message\"}}`, \
                       whose `code` is stable.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "accounts", description = "Sign up, sign in, tokens, the signed-in user"),
        (name = "channels", description = "Channels and their permission matrix"),
        (name = "members", description = "Members, roles, join and leave, kick and ban"),
        (name = "invites", description = "Invite codes and links"),
        (name = "videos", description = "Video metadata"),
        (name = "search", description = "Full-text search"),
        (name = "realtime", description = "Watch-together rooms: tickets for the WebSocket \
            (`GET /api/v1/channels/{id}/live`, protocol in docs/protocol.md) and chat history"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The error answers every operation may give, all with [`ErrorBody`].
const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed request (not JSON, a bad path or query parameter)",
    ),
    ("401", "No valid credentials"),
    ("403", "Not allowed"),
    ("404", "Not found, or not visible to the caller"),
    (
        "409",
        "Conflicts with the current state, or a version mismatch",
    ),
    ("410", "An invite that expired, was used up or revoked"),
    ("413", "Body over the size limit"),
    ("415", "Body is not JSON"),
    ("422", "A field is not acceptable"),
    ("429", "Too many requests; see Retry-After"),
    ("503", "A backend is unavailable; try again"),
];

/// Adds the error answers to every operation of `doc` (run once the
/// routers' paths are in).
pub fn with_error_responses(mut doc: Document) -> Document {
    ErrorResponses.modify(&mut doc);
    doc
}

struct ErrorResponses;

impl ErrorResponses {
    fn add(op: &mut Operation) {
        for (status, description) in ERRORS {
            if op.responses.responses.contains_key(*status) {
                continue;
            }
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            op.responses
                .responses
                .insert((*status).to_owned(), response.into());
        }
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::add(op);
            }
        }
    }
}
