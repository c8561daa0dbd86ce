//! Role-based access: the one table of every route, its permission and its audit action.
//!
//! The permission middleware looks the matched route up here and refuses (500, logged)
//! a route that is missing, so a forgotten entry fails closed; a test walks the router
//! and fails when a route has no entry or an entry has no route.

use axum::http::Method;

use super::auth::users::Role;

/// What a caller needs to use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// No credentials needed.
    Public,
    /// Any logged-in user (ownership is checked by the handler: others' apps are 404).
    User,
    /// Administrators only.
    Admin,
}

impl Perm {
    /// Does `role` satisfy this permission?
    pub fn allows(self, role: Role) -> bool {
        match self {
            Perm::Public | Perm::User => true,
            Perm::Admin => role == Role::Admin,
        }
    }
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// axum path pattern.
    pub path: &'static str,
    /// Needed permission.
    pub perm: Perm,
    /// Audit action name (state-changing routes) / operation name.
    pub action: &'static str,
}

const fn r(method: &'static str, path: &'static str, perm: Perm, action: &'static str) -> RouteSpec {
    RouteSpec {
        method,
        path,
        perm,
        action,
    }
}

use Perm::{Admin, Public, User};

/// Every route of the API.
pub const ROUTES: &[RouteSpec] = &[
    // auth
    r("GET", "/api/v1/auth/setup", Public, "auth.setup_status"),
    r("POST", "/api/v1/auth/setup", Public, "auth.setup"),
    r("POST", "/api/v1/auth/login", Public, "auth.login"),
    r("POST", "/api/v1/auth/refresh", Public, "auth.refresh"),
    r("POST", "/api/v1/auth/logout", User, "auth.logout"),
    r("GET", "/api/v1/auth/me", User, "auth.me"),
    r("POST", "/api/v1/auth/password", User, "auth.password"),
    // users
    r("GET", "/api/v1/users", Admin, "user.list"),
    r("POST", "/api/v1/users", Admin, "user.create"),
    r("GET", "/api/v1/users/{id}", Admin, "user.get"),
    r("PATCH", "/api/v1/users/{id}", Admin, "user.update"),
    r("DELETE", "/api/v1/users/{id}", Admin, "user.delete"),
    // personal API tokens
    r("GET", "/api/v1/tokens", User, "token.list"),
    r("POST", "/api/v1/tokens", User, "token.create"),
    r("DELETE", "/api/v1/tokens/{id}", User, "token.revoke"),
    // apps
    r("GET", "/api/v1/apps", User, "app.list"),
    r("POST", "/api/v1/apps", User, "app.deploy"),
    r("GET", "/api/v1/apps/discover", Admin, "app.discover"),
    r("POST", "/api/v1/apps/adopt", Admin, "app.adopt"),
    r("GET", "/api/v1/apps/{id}", User, "app.get"),
    r("DELETE", "/api/v1/apps/{id}", User, "app.delete"),
    r("POST", "/api/v1/apps/{id}/action", User, "app.action"),
    r("POST", "/api/v1/apps/{id}/clone", User, "app.clone"),
    r("POST", "/api/v1/apps/{id}/update", User, "app.update"),
    r("GET", "/api/v1/apps/{id}/logs", User, "app.logs"),
    r("GET", "/api/v1/apps/{id}/metrics", User, "app.metrics"),
    r("POST", "/api/v1/apps/{id}/exec", User, "app.exec"),
    // websocket; the handler also requires the CSRF value (cookies) or write scope (API
    // tokens), as for state-changing calls, and audits the session itself
    r("GET", "/api/v1/apps/{id}/console", User, "app.console"),
    r("GET", "/api/v1/apps/{id}/backups", User, "backup.list"),
    r("POST", "/api/v1/apps/{id}/backups", User, "backup.create"),
    r("GET", "/api/v1/apps/{id}/backups/stats", User, "backup.stats"),
    r("GET", "/api/v1/apps/{id}/backups/{backup_id}", User, "backup.get"),
    r("DELETE", "/api/v1/apps/{id}/backups/{backup_id}", User, "backup.delete"),
    r("POST", "/api/v1/apps/{id}/backups/{backup_id}/restore", User, "backup.restore"),
    // catalog
    r("GET", "/api/v1/catalog", User, "catalog.list"),
    r("GET", "/api/v1/catalog/categories", User, "catalog.categories"),
    r("GET", "/api/v1/catalog/search", User, "catalog.search"),
    r("POST", "/api/v1/catalog/reload", Admin, "catalog.reload"),
    r("GET", "/api/v1/catalog/{id}", User, "catalog.get"),
    // hosts and nodes
    r("GET", "/api/v1/hosts", Admin, "host.list"),
    r("POST", "/api/v1/hosts", Admin, "host.create"),
    r("GET", "/api/v1/hosts/{name}", Admin, "host.get"),
    r("PUT", "/api/v1/hosts/{name}", Admin, "host.update"),
    r("DELETE", "/api/v1/hosts/{name}", Admin, "host.delete"),
    r("POST", "/api/v1/hosts/{name}/test", Admin, "host.test"),
    r("POST", "/api/v1/hosts/{name}/sync", Admin, "host.sync"),
    r("GET", "/api/v1/nodes", User, "node.list"),
    // jobs
    r("GET", "/api/v1/jobs", User, "job.list"),
    r("GET", "/api/v1/jobs/{id}", User, "job.get"),
    r("GET", "/api/v1/jobs/{id}/events", User, "job.events"),
    // network
    r("GET", "/api/v1/network/leases", Admin, "network.leases"),
    r("GET", "/api/v1/network/records", Admin, "network.records"),
    r("GET", "/api/v1/network/routes", Admin, "network.routes"),
    r("GET", "/api/v1/network/forwards", Admin, "network.forwards"),
    r("GET", "/api/v1/network/firewall", Admin, "network.firewall"),
    r("POST", "/api/v1/network/self-test", Admin, "network.self_test"),
    r("GET", "/api/v1/network/ca", Public, "network.ca_info"),
    r("GET", "/api/v1/network/ca.pem", Public, "network.ca_pem"),
    r("GET", "/api/v1/network/ca.der", Public, "network.ca_der"),
    // settings
    r("GET", "/api/v1/settings/resources", Admin, "settings.get_resources"),
    r("PUT", "/api/v1/settings/resources", Admin, "settings.update_resources"),
    r("GET", "/api/v1/settings/network", Admin, "settings.get_network"),
    r("PUT", "/api/v1/settings/network", Admin, "settings.update_network"),
    r("GET", "/api/v1/settings/schedule", Admin, "settings.get_schedule"),
    r("PUT", "/api/v1/settings/schedule", Admin, "settings.update_schedule"),
    // system, audit, docs, metrics
    r("GET", "/api/v1/system/health", Public, "system.health"),
    r("GET", "/api/v1/system/info", User, "system.info"),
    r("GET", "/api/v1/audit", Admin, "audit.list"),
    r("GET", "/api/v1/openapi.json", Public, "docs.openapi"),
    r("GET", "/api/v1/docs", Public, "docs.page"),
    r("GET", "/metrics", Public, "metrics"),
];

/// The table entry of a matched route.
pub fn lookup(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    let m = if method == Method::HEAD { "GET" } else { method.as_str() };
    ROUTES.iter().find(|r| r.method == m && r.path == path)
}

/// Is this a state-changing method (audited, CSRF-checked)?
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_admin_areas_are_admin() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "duplicate {} {}", r.method, r.path);
            for admin_area in ["/api/v1/users", "/api/v1/hosts", "/api/v1/settings", "/api/v1/audit"] {
                if r.path.starts_with(admin_area) {
                    assert_eq!(r.perm, Perm::Admin, "{} {}", r.method, r.path);
                }
            }
        }
        assert!(!Perm::Admin.allows(Role::User));
        assert!(Perm::User.allows(Role::User));
    }
}
