//! What the OpenAPI document says of errors, for every operation at once
//! (the `#[utoipa::path]` annotations declare each route's own answers).
//!
//! - Every error body is `application/problem+json` (`error.rs`), so each
//!   response whose schema is `Problem` is declared with that media type.
//! - Errors any operation can answer are declared on each: 401 (every
//!   operation takes a token), 429 (the per-token rate limit on `/v1`, the
//!   agent protocol excepted), and, where the request has parameters or a
//!   body, 400 (they do not parse) and 413 (the body is over its limit).
//!
//! `scripts/schemathesis.sh` checks the server against this document.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The `Modify` that applies the rules above.
pub(crate) struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let rate_limited = !path.starts_with("/v1/agent/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                declare_errors(op, rate_limited);
            }
        }
    }
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

fn problem_response(description: &str) -> RefOr<Response> {
    let mut resp = Response::new(description);
    resp.content.insert(
        PROBLEM_JSON.to_string(),
        Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
    );
    RefOr::T(resp)
}

fn declare_errors(op: &mut Operation, rate_limited: bool) {
    // Problem bodies under their own media type.
    for resp in op.responses.responses.values_mut() {
        let RefOr::T(resp) = resp else { continue };
        let problem_keys: Vec<String> = resp
            .content
            .iter()
            .filter(|(_, c)| is_problem(c))
            .map(|(k, _)| k.clone())
            .collect();
        for key in problem_keys {
            if let Some(content) = resp.content.shift_remove(&key) {
                resp.content.insert(PROBLEM_JSON.to_string(), content);
            }
        }
    }
    let takes_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem_response(description));
    };
    add(
        "401",
        "Missing or invalid token: send `Authorization: Bearer <token>`",
    );
    if rate_limited {
        add(
            "429",
            "Over the token's request rate (`Retry-After` says when to retry)",
        );
    }
    if takes_input || has_body {
        add("400", "A parameter or the request body is invalid");
    }
    if has_body {
        add("413", "The request body is over its limit");
    }
}

#[cfg(test)]
mod tests {
    use crate::ApiDoc;
    use utoipa::OpenApi;

    #[test]
    fn every_error_is_declared_as_problem_json() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} does not declare 401"
                );
                for (status, resp) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let content = resp["content"].as_object().unwrap();
                        assert_eq!(
                            content.keys().collect::<Vec<_>>(),
                            vec![super::PROBLEM_JSON],
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
