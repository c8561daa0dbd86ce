//! `/api/v1/catalog`: list, categories, search, get, reload.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiResult, Problem};

/// A catalog entry (see `catalog/*.yaml`): id, name, description, version, category,
/// tags, icon, homepage, web port, form fields, minimum resources.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct CatalogEntryView(pub serde_json::Value);

/// Search query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words matched against name, description and tags.
    pub q: Option<String>,
    /// Only this category.
    pub category: Option<String>,
}

/// A category and its number of entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryView {
    /// Name.
    pub name: String,
    /// Entries in it.
    pub count: usize,
}

fn catalog_missing() -> ApiError {
    ApiError::unavailable("the app catalog is not available in this build")
}

/// Every catalog entry.
#[utoipa::path(get, path = "/api/v1/catalog", tag = "catalog",
    responses((status = 200, body = Vec<CatalogEntryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(_api): State<ApiState>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Err(catalog_missing())
}

/// Categories with counts.
#[utoipa::path(get, path = "/api/v1/catalog/categories", tag = "catalog",
    responses((status = 200, body = Vec<CategoryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn categories(State(_api): State<ApiState>) -> ApiResult<Json<Vec<CategoryView>>> {
    Err(catalog_missing())
}

/// Search the catalog.
#[utoipa::path(get, path = "/api/v1/catalog/search", tag = "catalog", params(SearchQuery),
    responses((status = 200, body = Vec<CatalogEntryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn search(State(_api): State<ApiState>, Query(_q): Query<SearchQuery>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Err(catalog_missing())
}

/// One entry.
#[utoipa::path(get, path = "/api/v1/catalog/{id}", tag = "catalog", params(("id" = String, Path, description = "catalog id")),
    responses((status = 200, body = CatalogEntryView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(_api): State<ApiState>, Path(_id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Err(catalog_missing())
}

/// Result of a reload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReloadResult {
    /// Entries loaded.
    pub entries: usize,
    /// Files that failed to load, with the reason.
    pub errors: Vec<String>,
}

/// Re-read the catalog directories.
#[utoipa::path(post, path = "/api/v1/catalog/reload", tag = "catalog",
    responses((status = 200, body = ReloadResult), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn reload(State(_api): State<ApiState>) -> ApiResult<Json<ReloadResult>> {
    Err(catalog_missing())
}
