//! The web client, built into the binary: `web/dist` (the committed Vite build) is
//! embedded at compile time, so `cargo run --release` serves it with no npm step.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, File, include_dir};

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/dist");

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

fn serve(file: &'static File<'static>) -> Response {
    let path = file.path().to_string_lossy();
    // Vite puts content hashes in asset names: those can be cached for good.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        file.contents(),
    )
        .into_response()
}

/// `/` and every file of the build at its own path.
pub fn router() -> Router {
    let mut router = Router::new();
    if let Some(index) = DIST.get_file("index.html") {
        router = router.route("/", get(move || async move { serve(index) }));
    }
    let mut stack = vec![&DIST];
    while let Some(dir) = stack.pop() {
        stack.extend(dir.dirs());
        for file in dir.files() {
            let route = format!("/{}", file.path().to_string_lossy());
            router = router.route(&route, get(move || async move { serve(file) }));
        }
    }
    router
}
