//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`. It is generated
//! from the code: each handler describes its operation with `#[utoipa::path]` (its DTOs derive
//! `ToSchema`, its query and path parameters `IntoParams`), and `api::RouteTable` registers each
//! route together with its description, so a route cannot be served undocumented. This file
//! holds what is true of many routes at once: the bearer-key security of `/api/v1`, the error
//! answers every operation can give, and the path syntax OpenAPI expects.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;
use utoipa::OpenApi;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};

use crate::api::error::ErrorBody;

/// The name of the bearer-key security scheme.
const BEARER: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flowd",
        description = "The REST API of flowd, a self-hosted workflow automation engine. JSON over \
            HTTP; errors answer `{\"error\": {\"code\", \"message\", \"details\"}}`; lists answer \
            `{\"items\", \"next_cursor\"}`, newest first; times are RFC 3339 UTC.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "flows", description = "Flow management"),
        (name = "triggers", description = "Starting runs: events, manual actions, webhooks"),
        (name = "runs", description = "The run log and run controls"),
        (name = "inbox", description = "Notifications of `notify` steps with `inbox: true`"),
        (name = "secrets", description = "The encrypted secret store; values are write-only"),
        (name = "audit", description = "Who changed what, when, in which workspace"),
        (name = "workspaces", description = "Workspaces: what a key sees and acts in"),
        (name = "meta", description = "This document"),
        (name = "health", description = "Liveness and readiness"),
    ),
    components(schemas(ErrorBody)),
)]
struct Base;

/// The document the route table adds its routes to: title, version, tags.
pub fn base() -> Document {
    Base::openapi()
}

/// Marks every operation of `doc` as needing an API key, as the auth layer on those routes
/// does: `Authorization: Bearer <key>` once any key exists, else 401.
pub fn require_key(doc: &mut Document) {
    for operation in doc.paths.paths.values_mut().flat_map(operations) {
        operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        add_error(
            operation,
            "401",
            "`unauthorized`: no valid API key (asked for once any key exists)",
        );
        add_error(
            operation,
            "403",
            "`forbidden`: the key's role does not allow this; `details: [{\"role_needed\"}]`",
        );
        add_error(
            operation,
            "404",
            "`not_found`, or `workspace_not_found` for a `workspace` the key may not see",
        );
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(workspace_parameter());
    }
}

/// `?workspace=W`, which every `/api/v1` operation takes (SPEC §11).
fn workspace_parameter() -> Parameter {
    ParameterBuilder::new()
        .name(crate::api::auth::WORKSPACE_PARAM)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "The workspace to act in: an admin key may name any; another key only its own \
             (any other answers 404 `workspace_not_found`). Without it a request acts in the \
             key's workspace, and an admin key's lists span every workspace.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::core::workspace::WORKSPACE_NAME_PATTERN)),
        ))
        .build()
}

/// Completes the document of the whole route table: the security scheme, the error answers any
/// operation can give, and `{name}` for axum's catch-all `{*name}` segments.
pub fn finish(mut doc: Document) -> Document {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key (`flowd keys create`, or `FLOWD_API_KEYS`); needed once any key \
                     exists, and the server runs open only on a loopback address.",
                ))
                .build(),
        ),
    );
    for operation in doc.paths.paths.values_mut().flat_map(operations) {
        if operation.request_body.is_some() {
            add_error(
                operation,
                "413",
                "`payload_too_large`: over `FLOWD_MAX_BODY`",
            );
        }
        add_error(
            operation,
            "default",
            "any other error: `bad_request`, `method_not_allowed`, `internal`, …",
        );
    }
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (openapi_path(&path), item))
        .collect();
    doc
}

/// `/hooks/{*path}` (axum's catch-all) as OpenAPI writes a path parameter: `/hooks/{path}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The operations of one path, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds an error answer unless the operation already describes that status.
fn add_error(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new().description(description);
            RefOr::T(response.content("application/json", body).build())
        });
}

/// The document as served, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    crate::api::openapi().to_pretty_json().unwrap_or_else(|e| {
        // Cannot happen (the document holds only strings and JSON values); say so if it does.
        error!(error = %e, "The OpenAPI document cannot be written.");
        json!({"error": {"code": "internal", "message": "the OpenAPI document cannot be written", "details": []}}).to_string()
    })
});

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "get_openapi", responses(
    (status = 200, description = "the OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
))]
pub async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// The schema the OpenAPI Initiative publishes for 3.1 documents (see the fixture's README).
    const OAS_3_1_SCHEMA: &str =
        include_str!("../../tests/fixtures/openapi/oas-3.1-schema-2022-10-07.json");

    fn document() -> Value {
        serde_json::to_value(crate::api::openapi()).expect("the document is JSON")
    }

    fn oas_problems(doc: &Value) -> Vec<String> {
        let schema: Value = serde_json::from_str(OAS_3_1_SCHEMA).expect("the fixture is JSON");
        let validator = jsonschema::validator_for(&schema).expect("the fixture is a JSON Schema");
        validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_document_is_valid_openapi_3_1() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let problems = oas_problems(&doc);
        assert!(problems.is_empty(), "{problems:#?}");
        // The OAS schema leaves Schema Objects to the JSON Schema 2020-12 dialect: check them too.
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        assert!(schemas.contains_key("ErrorBody") && schemas.contains_key("RunDetail"));
        for (name, schema) in schemas {
            let mut schema = schema.clone();
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
            if let Err(e) = jsonschema::meta::validate(&schema) {
                panic!("schema {name} is not valid JSON Schema 2020-12: {e}");
            }
        }
    }

    #[test]
    fn the_validation_catches_a_broken_document() {
        let mut doc = document();
        doc["info"].as_object_mut().expect("info").remove("version");
        doc["paths"]["/healthz"]["get"]["responses"]["200"]
            .as_object_mut()
            .expect("the 200 of /healthz")
            .remove("description");
        let problems = oas_problems(&doc);
        assert!(
            problems.iter().any(|p| p.contains("version")),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("description")),
            "{problems:#?}"
        );
    }

    #[test]
    fn api_v1_and_metrics_need_a_key_and_the_rest_does_not() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let secured = operation["security"] == serde_json::json!([{ BEARER: [] }]);
                let keyed = path.starts_with("/api/v1/") || path == "/metrics";
                assert_eq!(secured, keyed, "{method} {path}");
                assert!(
                    operation["responses"]["default"].is_object(),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn catch_all_segments_become_plain_parameters() {
        assert_eq!(openapi_path("/hooks/{*path}"), "/hooks/{path}");
        assert_eq!(openapi_path("/api/v1/runs/{id}"), "/api/v1/runs/{id}");
        let doc = document();
        assert!(doc["paths"]["/hooks/{path}"]["post"].is_object());
    }
}
