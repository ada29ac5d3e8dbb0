//! The AWS shared files, as AWS tools read them after the environment:
//! `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`
//! and `AWS_CONFIG_FILE`), the profile `AWS_PROFILE` (default `default`).
//! `object_store` reads only the environment, so S3 locations take these
//! settings here: the keys, the session token, the region and the
//! `endpoint_url` of the profile, each unless its environment variable is
//! set (the environment wins, then the profile, then a location's own
//! options over both).

use std::path::PathBuf;

/// The profile's settings as `object_store` option keys, without those the
/// environment sets.
pub(crate) fn settings() -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config = file("AWS_CONFIG_FILE", "config");
    let set = |names: &[&str]| names.iter().any(|n| std::env::var_os(n).is_some());
    parse(&credentials, &config, &profile)
        .into_iter()
        .filter(|(key, _)| {
            !set(match key.as_str() {
                "access_key_id" => &["AWS_ACCESS_KEY_ID"],
                "secret_access_key" => &["AWS_SECRET_ACCESS_KEY"],
                "token" => &["AWS_SESSION_TOKEN"],
                "region" => &["AWS_REGION", "AWS_DEFAULT_REGION"],
                _ => &["AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
            })
        })
        .collect()
}

/// The settings of `profile` in the texts of the two files (a profile is
/// `[name]` in the credentials file, `[profile name]` or `[default]` in the
/// config file; the credentials file wins).
fn parse(credentials: &str, config: &str, profile: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    for (text, section) in [(credentials, profile.to_string()), (config, config_section)] {
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = name.trim() == section;
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !inside || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let key = match key.trim() {
                "aws_access_key_id" => "access_key_id",
                "aws_secret_access_key" => "secret_access_key",
                "aws_session_token" => "token",
                "region" => "region",
                "endpoint_url" => "endpoint",
                _ => continue,
            };
            if !found.iter().any(|(k, _)| k == key) {
                found.push((key.to_string(), value.trim().to_string()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_both_files_and_the_credentials_file_wins() {
        let credentials = "[default]\naws_access_key_id = D\n\n[work]\naws_access_key_id = W\naws_secret_access_key = S\n";
        let config = "[default]\nregion = eu-west-1\n[profile work]\nregion = us-east-2\naws_access_key_id = ignored\nendpoint_url = http://127.0.0.1:9000\n";
        let work = parse(credentials, config, "work");
        assert_eq!(
            work,
            [
                ("access_key_id".to_string(), "W".to_string()),
                ("secret_access_key".into(), "S".into()),
                ("region".into(), "us-east-2".into()),
                ("endpoint".into(), "http://127.0.0.1:9000".into()),
            ]
        );
        let default = parse(credentials, config, "default");
        assert_eq!(
            default,
            [
                ("access_key_id".to_string(), "D".to_string()),
                ("region".into(), "eu-west-1".into()),
            ]
        );
        assert!(parse(credentials, config, "missing").is_empty());
    }
}
