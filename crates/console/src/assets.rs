//! The console's static files, embedded in the binary. Each is served at a
//! name carrying a hash of its bytes, so a browser may keep it for a year:
//! a new build with a changed file gives it a new name.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    /// `console.css`, as the templates name it.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// `console.1a2b3c4d5e6f.css`: where it is served.
    pub hashed: String,
}

const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "htmx.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx-2.0.11.min.js"),
    ),
];

pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, bytes)| {
            let digest = Sha256::digest(bytes);
            let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            Asset {
                name,
                content_type,
                bytes,
                hashed: format!("{stem}.{hash}.{ext}"),
            }
        })
        .collect()
});

/// The URL of the asset the templates call `name`.
pub fn url(name: &str) -> String {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map_or_else(String::new, |a| format!("/console/assets/{}", a.hashed))
}

/// `GET /console/assets/{file}`: only the current hashed names exist.
pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.hashed == file) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_hashed_name() {
        let names: std::collections::HashSet<_> = ASSETS.iter().map(|a| &a.hashed).collect();
        assert_eq!(names.len(), FILES.len());
        assert!(url("console.css").starts_with("/console/assets/console."));
        assert!(url("console.css").ends_with(".css"));
        assert_eq!(url("nothing.css"), "");
    }
}
