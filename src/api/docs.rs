//! The OpenAPI document (utoipa) and a self-contained interactive docs page.
//!
//! The document is checked in as `src/api/openapi.json` (the web UI follows it). A test
//! fails when it is stale; regenerate with `UPDATE_GOLDEN=1 cargo test --lib api::docs`.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers::{apps, auth, backups, catalog, console, hosts, jobs, network, settings, system, tokens, users};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Proximity management API", version = "1", description = "Management REST API of the Proximity appliance. \
Authenticate with `POST /api/v1/auth/login`, then send `Authorization: Bearer <access_token>` (or use the cookies it sets; \
state-changing cookie-authenticated calls must repeat the `proximity_csrf` cookie in `X-CSRF-Token`). Errors are RFC 9457 \
problem documents. Long operations answer 202 with `Location: /api/v1/jobs/{id}`."),
    paths(
        auth::setup_status, auth::setup, auth::login, auth::refresh, auth::logout, auth::me, auth::password,
        users::list, users::create, users::get_one, users::update, users::remove,
        tokens::list, tokens::create, tokens::revoke,
        apps::list, apps::deploy, apps::discover, apps::adopt, apps::get_one, apps::remove, apps::action, apps::clone_app,
        apps::update, apps::logs, apps::metrics, apps::exec, console::open,
        backups::list, backups::create, backups::stats, backups::get_one, backups::remove, backups::restore,
        catalog::list, catalog::categories, catalog::search, catalog::reload, catalog::get_one,
        hosts::list, hosts::create, hosts::get_one, hosts::update, hosts::remove, hosts::test, hosts::sync, hosts::nodes,
        jobs::list, jobs::get_one, jobs::events,
        network::leases, network::records, network::routes, network::forwards, network::firewall, network::self_test,
        network::ca_info, network::ca_pem, network::ca_der,
        settings::get_resources, settings::put_resources, settings::get_network, settings::put_network,
        settings::get_schedule, settings::put_schedule,
        system::health, system::info, system::metrics,
        super::audit::list, openapi_json, docs_page,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "Login, tokens, first-run setup"),
        (name = "users", description = "User management (admin)"),
        (name = "tokens", description = "Personal API tokens"),
        (name = "apps", description = "Deployed apps"),
        (name = "backups", description = "Backups of apps"),
        (name = "catalog", description = "App catalog"),
        (name = "hosts", description = "Proxmox hosts and nodes"),
        (name = "jobs", description = "Background jobs and their live events"),
        (name = "network", description = "Network plane"),
        (name = "settings", description = "Runtime settings (admin)"),
        (name = "system", description = "Health, info, metrics"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "docs", description = "This document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or prx_ API token")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::auth::ACCESS_COOKIE))),
        );
    }
}

/// The document as pretty JSON (what the golden file holds).
pub fn openapi_pretty() -> String {
    let mut s = <ApiDoc as OpenApi>::openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "docs.openapi", tag = "docs", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mut r = DOC.get_or_init(openapi_pretty).clone().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Interactive documentation (self-contained HTML; no external resources).
#[utoipa::path(get, path = "/api/v1/docs", operation_id = "docs.page", tag = "docs", security(()),
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
pub async fn docs_page() -> Response {
    let mut r = Html(DOCS_HTML).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
    );
    r
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Proximity API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:12px;align-items:center}
header input{flex:1;max-width:520px;padding:6px;border-radius:4px;border:0}
main{padding:16px 20px;max-width:1100px}
details{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0}
summary{cursor:pointer;padding:8px 10px;font-family:monospace}
.m{display:inline-block;width:64px;font-weight:bold}
.GET{color:#1565c0}.POST{color:#2e7d32}.PUT{color:#ef6c00}.PATCH{color:#6a1b9a}.DELETE{color:#c62828}
.b{padding:4px 14px 12px}pre{background:#f0f2f5;padding:8px;overflow:auto;max-height:360px}
textarea{width:100%;min-height:90px;font-family:monospace}label{display:block;margin-top:6px}
h2{margin:18px 0 6px;text-transform:capitalize}
</style></head><body>
<header><b>Proximity API</b><input id="tok" placeholder="Bearer token (from POST /api/v1/auth/login)"><a style="color:#9cf" href="/api/v1/openapi.json">openapi.json</a></header>
<main id="main">Loading…</main>
<script>
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
fetch('/api/v1/openapi.json').then(r=>r.json()).then(doc=>{
  const main=document.getElementById('main');main.innerHTML='<p>'+esc(doc.info.description||'')+'</p>';
  const byTag={};
  for(const [path,item] of Object.entries(doc.paths))for(const [m,op] of Object.entries(item)){
    if(!op||typeof op!=='object'||!op.responses)continue;const t=(op.tags||['other'])[0];(byTag[t]=byTag[t]||[]).push([m.toUpperCase(),path,op]);}
  for(const [tag,ops] of Object.entries(byTag)){
    const h=document.createElement('h2');h.textContent=tag;main.appendChild(h);
    for(const [m,path,op] of ops){
      const d=document.createElement('details');
      const params=(op.parameters||[]).map(p=>'<label>'+esc(p.name)+' ('+esc(p.in)+')<input data-p="'+esc(p.name)+'" data-in="'+esc(p.in)+'"></label>').join('');
      const body=op.requestBody?'<label>JSON body<textarea data-body></textarea></label>':'';
      d.innerHTML='<summary><span class="m '+m+'">'+m+'</span>'+esc(path)+' — '+esc(op.summary||op.description||'')+'</summary><div class="b">'
        +'<p>'+esc(op.description||'')+'</p>'+params+body+'<p><button>Send</button></p><pre hidden></pre>'
        +'<p>Responses: '+Object.keys(op.responses).map(esc).join(', ')+'</p></div>';
      d.querySelector('button').onclick=async()=>{
        let url=path;const q=new URLSearchParams();
        d.querySelectorAll('input[data-p]').forEach(i=>{if(!i.value)return;if(i.dataset.in==='path')url=url.replace('{'+i.dataset.p+'}',encodeURIComponent(i.value));else if(i.dataset.in==='query')q.set(i.dataset.p,i.value);});
        if([...q].length)url+='?'+q;
        const h={};const t=document.getElementById('tok').value.trim();if(t)h['Authorization']='Bearer '+t;
        const ta=d.querySelector('textarea[data-body]');let b;if(ta&&ta.value.trim()){h['Content-Type']='application/json';b=ta.value;}
        const out=d.querySelector('pre');out.hidden=false;out.textContent='…';
        try{const r=await fetch(url,{method:m,headers:h,body:b});const txt=await r.text();out.textContent=r.status+' '+r.statusText+'\n\n'+txt;}
        catch(e){out.textContent=String(e);}
      };
      main.appendChild(d);
    }
  }
}).catch(e=>{document.getElementById('main').textContent='Cannot load the OpenAPI document: '+e;});
</script></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in golden file equals the generated document.
    /// Regenerate: `UPDATE_GOLDEN=1 cargo test --lib api::docs`.
    #[test]
    fn openapi_golden_file_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json");
        let now = openapi_pretty();
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &now).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == now,
            "src/api/openapi.json is stale; regenerate with `UPDATE_GOLDEN=1 cargo test --lib api::docs` and commit it"
        );
    }

    /// Every route of the permission table is documented, and nothing else is.
    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_pretty()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (p, item) in paths {
            for m in ["get", "post", "put", "patch", "delete"] {
                if item.get(m).is_some() {
                    documented.insert((m.to_uppercase(), p.clone()));
                }
            }
        }
        let table: std::collections::BTreeSet<_> = super::super::rbac::ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented, table, "OpenAPI paths and the route table differ");
    }
}
