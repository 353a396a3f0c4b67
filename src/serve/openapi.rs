//! The OpenAPI 3.1 document of `/api/v1`, written by hand beside the routes it describes
//! (`serve::router`); a test requests every path it lists and expects no 404.

use serde_json::{json, Value};

fn error_ref() -> Value {
    json!({ "description": "Error", "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": {
        "schema": { "type": "object" } } } })
}

fn batch_param() -> Value {
    json!([{ "name": "batch_id", "in": "path", "required": true,
             "schema": { "type": "string" } }])
}

/// An operation on one batch: read (`get`) or act (`post`, operator role).
fn batch_op(method: &str, summary: &str, body: Option<Value>) -> Value {
    let mut op = json!({
        "summary": summary,
        "parameters": batch_param(),
        "responses": { "200": ok(summary), "400": error_ref(), "401": error_ref(),
                       "403": error_ref(), "404": error_ref() }
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({ "required": false,
            "content": { "application/json": { "schema": schema } } });
    }
    json!({ method: op })
}

/// The document.
pub fn document() -> Value {
    let create_schema = json!({
        "type": "object", "additionalProperties": false, "required": ["video", "prompts"],
        "properties": {
            "video": { "type": "string", "format": "uri", "description": "https URL of the source clip, or upload:<sha256>.<ext>" },
            "prompts": { "type": "array", "items": { "type": "string" }, "description": "one variant per prompt" },
            "provider": { "type": "string", "description": "aimlapi (default), fal, kling, …" },
            "model": { "type": "string", "enum": ["edit", "reference"] },
            "images": { "type": "array", "items": { "type": "string", "format": "uri" } },
            "keep_audio": { "type": "boolean" },
            "aspect_ratio": { "type": "string" },
            "duration": { "type": "integer" },
            "batch_id": { "type": "string", "description": "derived from the content when omitted" },
            "max_cost": { "type": "number", "description": "budget in USD" },
            "clip_seconds": { "type": "number" },
            "on_done": { "type": "string", "description": "a hook named in settings" },
            "tier": { "type": "string", "enum": ["standard", "pro"] },
            "skip_probe": { "type": "boolean" }
        }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "restyle API", "version": "1",
                  "description": "Batches of video-to-video variants. Every call needs `Authorization: Bearer <token>`; calls that change state need an operator token." },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "properties": { "error": {
                "type": "object", "properties": {
                    "field": { "type": ["string", "null"] },
                    "variant": { "type": "integer" },
                    "message": { "type": "string" } } } } } }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/api/v1/openapi.json": { "get": { "summary": "This document",
                "responses": { "200": ok("OpenAPI document"), "401": error_ref() } } },
            "/api/v1/batches": {
                "get": { "summary": "List batches, newest first",
                    "parameters": [
                        { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200 } }],
                    "responses": { "200": ok("Batches"), "401": error_ref() } },
                "post": { "summary": "Validate and enqueue a batch (idempotent: the same batch again adds nothing)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": create_schema } } },
                    "responses": { "201": ok("Enqueued"), "200": ok("Already enqueued"),
                        "400": error_ref(), "401": error_ref(), "403": error_ref(), "409": error_ref() } }
            },
            "/api/v1/uploads": { "post": { "summary": "Upload a clip or image (raw body; Content-Type video/mp4, video/quicktime, video/webm, image/png, image/jpeg, image/webp, image/gif); a batch names it by the returned upload:<sha256>.<ext>",
                "requestBody": { "required": true, "content": { "video/mp4": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": { "201": ok("Stored"), "400": error_ref(), "401": error_ref(), "403": error_ref(), "413": error_ref() } } },
            "/api/v1/providers": { "get": { "summary": "Every provider's admission state (in flight, cap, rate, cool-down, pause) and the queue's depth",
                "responses": { "200": ok("Providers"), "401": error_ref() } } },
            "/api/v1/providers/{provider}/resume": { "post": { "summary": "Lift a provider's account pause (as restyle resume)",
                "parameters": [{ "name": "provider", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": ok("Resumed"), "400": error_ref(), "401": error_ref(), "403": error_ref() } } },
            "/api/v1/dead": { "get": { "summary": "The newest dead jobs with their reasons (as restyle dead --json)",
                "parameters": [{ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }],
                "responses": { "200": ok("Dead jobs"), "401": error_ref() } } },
            "/api/v1/batches/{batch_id}": batch_op("get", "A batch's status (as restyle status --json)", None),
            "/api/v1/batches/{batch_id}/results": batch_op("get", "A batch's result lines (as restyle results)", None),
            "/api/v1/batches/{batch_id}/cancel": batch_op("post", "Cancel every job not yet terminal", None),
            "/api/v1/batches/{batch_id}/retry": batch_op("post", "Requeue failed, dead or timed-out jobs",
                Some(json!({ "type": "object", "properties": { "states": { "type": "array", "items": { "type": "string" } } } }))),
            "/api/v1/batches/{batch_id}/budget": batch_op("post", "Set the batch's budget (USD)",
                Some(json!({ "type": "object", "required": ["max_cost"], "properties": { "max_cost": { "type": "number" } } }))),
            "/api/v1/batches/{batch_id}/marks": batch_op("get", "The batch's review marks: job id to keep or reject", None),
            "/api/v1/batches/{batch_id}/marks/{job_id}": { "put": {
                "summary": "Mark a variant keep or reject, or clear its mark (none); operator role",
                "parameters": [
                    { "name": "batch_id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "job_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["mark"],
                    "properties": { "mark": { "type": "string", "enum": ["keep", "reject", "none"] } } } } } },
                "responses": { "200": ok("Marked"), "400": error_ref(), "401": error_ref(),
                               "403": error_ref(), "404": error_ref() } } },
            "/api/v1/batches/{batch_id}/kept.zip": { "get": {
                "summary": "One zip of the outputs marked keep (stored, not recompressed) and manifest.json",
                "parameters": batch_param(),
                "responses": {
                    "200": { "description": "The archive", "content": { "application/zip": {
                        "schema": { "type": "string", "format": "binary" } } } },
                    "401": error_ref(), "404": error_ref(), "413": error_ref() } } }
        }
    })
}
