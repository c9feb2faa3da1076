//! Serving one request: list/get/write/delete and their responses; watches are handed to
//! `watch_stream.rs`, path parsing is in `api_path.rs`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;

use super::api_path::{as_served, parse_path, query_param, ApiPath};
use super::objects::{merge, rv_of, ApiFailure, ObjectKey, WriteScope};
use super::selectors::Selector;
use super::shared::{Body, RecordedRequest, Shared};

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
        });
        shared.touch();
        let fault = state.faults.iter_mut().find(|f| {
            f.method.as_ref().is_none_or(|m| *m == method)
                && path.contains(&f.path_contains)
                && f.remaining != Some(0)
        });
        if let Some(fault) = fault {
            if let Some(n) = fault.remaining.as_mut() {
                *n -= 1;
            }
            return failure(&fault.failure());
        }
    }
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"}),
        );
    }
    let Some(api) = parse_path(&path) else {
        return failure(&ApiFailure {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
        });
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let watch = matches!(query_param(&query, "watch").as_deref(), Some("true" | "1"));
    match (&method, api.name.is_some()) {
        (&Method::GET, false) if watch => super::watch_stream::start_watch(shared, api, &query),
        (&Method::GET, false) => list(&shared, &api, &query),
        (&Method::GET, true) => get(&shared, &api),
        (&Method::POST, false) => write(&shared, &api, &body, Write::Create),
        (&Method::PUT, true) => write(&shared, &api, &body, Write::Replace),
        (&Method::PATCH, true) => {
            let kind = match content_type.as_deref().unwrap_or_default() {
                ct if ct.starts_with("application/apply-patch") => Write::Apply,
                ct if ct.starts_with("application/merge-patch+json")
                    || ct.starts_with("application/strategic-merge-patch+json") =>
                {
                    Write::Merge
                }
                other => {
                    return failure(&ApiFailure {
                        code: 415,
                        reason: "UnsupportedMediaType",
                        message: format!("the fake does not support patch type {other:?}"),
                    })
                }
            };
            write(&shared, &api, &body, kind)
        }
        (&Method::DELETE, true) => delete(&shared, &api),
        _ => failure(&ApiFailure {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{method} is not supported on {path}"),
        }),
    }
}

fn store_key(api: &ApiPath, name: &str) -> ObjectKey {
    ObjectKey {
        group: api.rt.group,
        plural: api.rt.plural,
        namespace: api.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    }
}

fn list(shared: &Shared, api: &ApiPath, query: &str) -> Response<Body> {
    let selector = Selector::parse(
        query_param(query, "labelSelector").as_deref(),
        query_param(query, "fieldSelector").as_deref(),
    );
    let state = shared.lock();
    let items: Vec<Value> = state
        .store
        .list(api.rt, api.namespace.as_deref())
        .filter(|(_, o)| selector.matches(o))
        .map(|(_, o)| as_served(api, o.clone()))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api.rt.api_version(&api.version),
            "kind": format!("{}List", api.rt.kind),
            "metadata": {"resourceVersion": state.store.resource_version().to_string()},
            "items": items,
        }),
    )
}

fn get(shared: &Shared, api: &ApiPath) -> Response<Body> {
    let name = api.name.as_deref().unwrap_or_default();
    match shared.lock().store.get(&store_key(api, name)) {
        Some(o) => json_response(StatusCode::OK, &as_served(api, o.clone())),
        None => failure(&ApiFailure::not_found(api.rt, name)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Write {
    Create,
    Replace,
    Apply,
    Merge,
}

fn write(shared: &Shared, api: &ApiPath, body: &[u8], kind: Write) -> Response<Body> {
    // Server-side apply bodies are YAML (JSON is YAML too).
    let parsed: Result<Value, String> = match kind {
        Write::Apply => serde_yaml::from_slice(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    let object = match parsed {
        Ok(v) if v.is_object() => v,
        Ok(_) => return bad_request("body is not an object".into()),
        Err(e) => return bad_request(format!("body does not parse: {e}")),
    };
    let name = match (&api.name, object["metadata"]["name"].as_str()) {
        (Some(path_name), Some(body_name)) if path_name != body_name => {
            return bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({path_name})"
            ))
        }
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n.to_string(),
        (None, None) => return bad_request("metadata.name: Required value".into()),
    };
    let key = store_key(api, &name);
    let scope = if api.status {
        WriteScope::Status
    } else {
        WriteScope::Main
    };
    let mut state = shared.lock();
    let existing = state.store.get(&key).cloned();
    let result = match (kind, existing) {
        (Write::Create, _) => state
            .store
            .create(key, object)
            .map(|o| (StatusCode::CREATED, o)),
        (Write::Apply, None) => state
            .store
            .create(key, object)
            .map(|o| (StatusCode::CREATED, o)),
        (Write::Merge, None) | (Write::Replace, None) => Err(ApiFailure::not_found(api.rt, &name)),
        (Write::Replace, Some(_)) => {
            let expected = Some(rv_of(&object)).filter(|rv| *rv != 0);
            state
                .store
                .update(&key, object, expected, scope)
                .map(|o| (StatusCode::OK, o))
        }
        (Write::Apply | Write::Merge, Some(mut current)) => {
            merge(&mut current, &object);
            state
                .store
                .update(&key, current, None, scope)
                .map(|o| (StatusCode::OK, o))
        }
    };
    drop(state);
    shared.notify();
    match result {
        Ok((code, o)) => json_response(code, &as_served(api, o)),
        Err(e) => failure(&e),
    }
}

fn delete(shared: &Shared, api: &ApiPath) -> Response<Body> {
    let name = api.name.as_deref().unwrap_or_default();
    let result = shared.lock().store.delete(&store_key(api, name));
    shared.notify();
    match result {
        Ok(o) => json_response(StatusCode::OK, &as_served(api, o)),
        Err(e) => failure(&e),
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(value.to_string()))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn failure(failure: &ApiFailure) -> Response<Body> {
    let code = StatusCode::from_u16(failure.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &failure.to_status())
}

fn bad_request(message: String) -> Response<Body> {
    failure(&ApiFailure {
        code: 400,
        reason: "BadRequest",
        message,
    })
}
