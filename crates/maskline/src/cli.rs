//! CLI commands: HTTP clients of a running server, configured from the same
//! file and environment as `serve` (its address and keys).

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::Config;

/// Most numbers the server takes per import request.
const IMPORT_CHUNK: usize = 10_000;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Server base URL [default: http://<MASKLINE_HTTP_LISTEN>]
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Key to authenticate with [default: MASKLINE_ADMIN_KEY, or
    /// MASKLINE_SWITCH_KEY for `route`]
    #[arg(
        long,
        value_name = "KEY",
        env = "MASKLINE_CLI_KEY",
        hide_env_values = true
    )]
    key: Option<String>,
}

impl ServerArgs {
    fn admin_key(&self, config: &Config) -> anyhow::Result<String> {
        self.key
            .clone()
            .or_else(|| config.admin_key.clone())
            .context("no admin key: pass --key or set MASKLINE_ADMIN_KEY")
    }

    fn base(&self, config: &Config) -> String {
        self.server
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.http_listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// POSTs `body` to `path` with `key` and prints the answer.
async fn post_and_print(
    config: &Config,
    server: &ServerArgs,
    path: &str,
    key: String,
    body: &Value,
) -> anyhow::Result<()> {
    let answer = send(
        reqwest::Client::new()
            .post(format!("{}{path}", server.base(config)))
            .bearer_auth(key)
            .json(body),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let res = req.send().await.context("cannot reach the server")?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or("");
        let code = body["code"].as_str().unwrap_or("");
        bail!("server refused ({status}, {code}): {detail}");
    }
    Ok(body)
}

pub async fn tenant_create(config: &Config, server: &ServerArgs, name: &str) -> anyhow::Result<()> {
    let key = server.admin_key(config)?;
    post_and_print(config, server, "/v1/tenants", key, &json!({ "name": name })).await
}

pub async fn users_add(
    config: &Config,
    server: &ServerArgs,
    email: &str,
    role: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let key = server.admin_key(config)?;
    let password = match std::env::var("MASKLINE_USER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if password.is_empty() {
        bail!("no password: set MASKLINE_USER_PASSWORD or give it on standard input");
    }
    let mut body = json!({ "email": email, "password": password, "role": role });
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    post_and_print(config, server, "/v1/users", key, &body).await
}

/// Reads `number[,area]` lines; a first line starting with `number` is a header.
pub fn read_csv(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || (i == 0 && line.to_ascii_lowercase().starts_with("number"))
        {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let number = fields.next().unwrap_or("");
        let area = fields.next().filter(|a| !a.is_empty());
        if fields.next().is_some() {
            bail!("line {}: expected `number[,area]`", i + 1);
        }
        out.push(match area {
            Some(a) => json!({ "number": number, "area": a }),
            None => json!({ "number": number }),
        });
    }
    Ok(out)
}

pub async fn numbers_import(
    config: &Config,
    server: &ServerArgs,
    file: &Path,
    tenant: &str,
) -> anyhow::Result<()> {
    let key = server.admin_key(config)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let entries = read_csv(&text)?;
    if entries.is_empty() {
        bail!("{} holds no numbers", file.display());
    }
    let client = reqwest::Client::new();
    let (mut imported, mut existing) = (0, 0);
    for chunk in entries.chunks(IMPORT_CHUNK) {
        let body = send(
            client
                .post(format!("{}/v1/numbers", server.base(config)))
                .bearer_auth(&key)
                .header("Maskline-Tenant", tenant)
                .json(&json!({ "numbers": chunk })),
        )
        .await?;
        imported += body["imported"].as_u64().unwrap_or(0);
        existing += body["existing"].as_u64().unwrap_or(0);
    }
    println!("imported {imported}, already present {existing}");
    Ok(())
}

pub async fn route(
    config: &Config,
    server: &ServerArgs,
    caller: &str,
    called: &str,
    extension: Option<&str>,
    channel: &str,
) -> anyhow::Result<()> {
    let key = server
        .key
        .clone()
        .or_else(|| config.switch_key.clone())
        .context("no switch key: pass --key or set MASKLINE_SWITCH_KEY")?;
    let mut req = json!({ "caller": caller, "called": called, "channel": channel });
    if let Some(e) = extension {
        req["extension"] = json!(e);
    }
    post_and_print(config, server, "/v1/route", key, &req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_areas_and_blank_lines() {
        let rows = read_csv("number,area\n+8657100000001,0571\n\n+8657100000002\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["area"], "0571");
        assert!(rows[1].get("area").is_none());
    }

    #[test]
    fn csv_with_extra_columns_is_refused() {
        assert!(read_csv("+8657100000001,0571,x\n").is_err());
    }
}
