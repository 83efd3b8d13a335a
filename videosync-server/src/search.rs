//! Full-text search over videos (title, description, tags) through the
//! core's search: ranked, paged, and limited to what the caller may see
//! (a non-member never finds a private channel's videos).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use videosync_core::db::Videos;

use crate::auth::Caller;
use crate::dto::{PageOf, PageParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::extract::Query;
use crate::state::AppState;
use crate::videos::VideoView;

/// The routes of this capability.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_videos))
}

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// `?q=&cursor=&limit=`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to find (each matches as a prefix): 1 to 200 characters, not
    /// all white space.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub q: String,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// How many at most (1 to 200; default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHitView {
    /// The video.
    pub video: VideoView,
    /// Relevance; higher is better, comparable within one result list.
    pub score: f64,
}

/// Search videos.
#[utoipa::path(get, path = "/search/videos", tag = "search", security(("bearer" = []), ()), params(SearchParams),
    responses((status = 200, description = "A page of results, best first", body = PageOf<SearchHitView>)))]
async fn search_videos(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<PageOf<SearchHitView>>> {
    // The length is the query's as sent, as the document states it.
    let q = params.q.trim();
    if q.is_empty() || params.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(format!(
            "q must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    }
    .request()?;
    // One statement per relevance tier, and the page rarely needs more
    // than one: no snapshot across them is worth two round trips.
    let mut tx = app.backends.db.autocommit().await?;
    let hits = tx.search_videos(q, caller.viewer(), page).await?;
    tx.commit().await?;
    Ok(Json(PageOf::from_page(hits, |h| SearchHitView {
        video: VideoView::from(&h.video),
        score: h.score,
    })))
}
