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

fn catalog(api: &ApiState) -> ApiResult<&crate::catalog::Catalog> {
    api.catalog
        .as_deref()
        .ok_or_else(|| ApiError::unavailable("the app catalog could not be loaded; see the appliance log"))
}

fn entries(v: Vec<std::sync::Arc<crate::catalog::CatalogEntry>>) -> Vec<serde_json::Value> {
    v.iter().filter_map(|e| serde_json::to_value(e.as_ref()).ok()).collect()
}

/// Every catalog entry.
#[utoipa::path(get, path = "/api/v1/catalog", operation_id = "catalog.list", tag = "catalog",
    responses((status = 200, body = Vec<CatalogEntryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(api): State<ApiState>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(entries(catalog(&api)?.list())))
}

/// Categories with counts.
#[utoipa::path(get, path = "/api/v1/catalog/categories", operation_id = "catalog.categories", tag = "catalog",
    responses((status = 200, body = Vec<CategoryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn categories(State(api): State<ApiState>) -> ApiResult<Json<Vec<CategoryView>>> {
    Ok(Json(
        catalog(&api)?
            .categories()
            .into_iter()
            .map(|c| CategoryView {
                name: c.name,
                count: c.count,
            })
            .collect(),
    ))
}

/// Search the catalog.
#[utoipa::path(get, path = "/api/v1/catalog/search", operation_id = "catalog.search", tag = "catalog", params(SearchQuery),
    responses((status = 200, body = Vec<CatalogEntryView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn search(State(api): State<ApiState>, Query(q): Query<SearchQuery>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let text = q.q.unwrap_or_default();
    let cat = q.category.filter(|c| !c.is_empty());
    Ok(Json(entries(catalog(&api)?.search(&text, cat.as_deref()))))
}

/// One entry.
#[utoipa::path(get, path = "/api/v1/catalog/{id}", operation_id = "catalog.get", tag = "catalog", params(("id" = String, Path, description = "catalog id")),
    responses((status = 200, body = CatalogEntryView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let e = catalog(&api)?
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no catalog entry {id}")))?;
    Ok(Json(serde_json::to_value(e.as_ref()).map_err(ApiError::internal)?))
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
#[utoipa::path(post, path = "/api/v1/catalog/reload", operation_id = "catalog.reload", tag = "catalog",
    responses((status = 200, body = ReloadResult), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn reload(State(api): State<ApiState>) -> ApiResult<Json<ReloadResult>> {
    let c = catalog(&api)?;
    match c.reload() {
        Ok(stats) => Ok(Json(ReloadResult {
            entries: stats.apps,
            errors: vec![],
        })),
        Err(crate::catalog::CatalogError::Invalid(issues)) => Err(ApiError::validation(
            issues
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("files[{i}]"), x.to_string()))
                .collect(),
        )),
    }
}
